/* The hot path of lftop.logs.parse.LogParser, in C: lines made only of tqdm frames, blank segments and
 * transformers' standard metric dict, which are nearly all of a long training.log.
 *
 * scan(data, pos, line, train_total, last_step, frame, pending, out, Point, Progress, clock_seconds)
 * reads the lines of `data` from offset `pos` (line number `line`) as LogParser would, appending Point
 * and Progress records to `out`, and stops at the first line of any other shape (or with a second
 * metric dict waiting for its step), returning (pos, line, last_step, frame, pending) for the Python
 * parser to go on from; pos is len(data) + 1 when every line was read. Each line is checked whole
 * before it changes any state, so a line it does not take is left to Python untouched.
 * tests/test_logs.py holds both parsers to the same records on any log.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdlib.h>
#include <string.h>

#define MAX_EVENTS 16

typedef struct {
    long long step, total;
    int unit;            /* 0: no rate, 1: it/s, 2: s/it */
    const char *rate;    /* digits and at most one dot, parsed only for the frames LogParser reads */
    Py_ssize_t rate_len;
    const char *rem;
    Py_ssize_t rem_len;
} frame_t;

typedef struct {
    double v[4];         /* loss, grad_norm, learning_rate, epoch: the order transformers prints */
    const char *raw[4];
    Py_ssize_t raw_len[4];
} dict_t;

typedef struct {
    int is_dict;
    frame_t f;
    dict_t d;
} event_t;

static int digits(const char **p, const char *e, long long *out)
{
    const char *s = *p;
    long long v = 0;
    while (*p < e && **p >= '0' && **p <= '9' && *p - s < 18)
        v = v * 10 + (*(*p)++ - '0');
    if (*p == s || (*p < e && **p >= '0' && **p <= '9'))
        return 0;  /* none, or too many for a long long */
    *out = v;
    return 1;
}

static int number(const char *s, Py_ssize_t n, double *out)
{
    char buf[64];
    char *end;
    if (n <= 0 || n >= (Py_ssize_t)sizeof buf)
        return 0;
    memcpy(buf, s, n);
    buf[n] = 0;
    /* strtod and float() both round correctly, so they agree on these strings (digits, one dot, an
       exponent); PyOS_string_to_double costs a floating-point mode switch per call. Anything strtod
       does not read whole (another locale's decimal point) leaves the line to Python. */
    *out = strtod(buf, &end);
    return end == buf + n;
}

/* [0-9]*\.?[0-9]* with a digit: what float() takes among strings of digits and dots */
static int decimal(const char *s, Py_ssize_t n)
{
    int dots = 0, nums = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (s[i] == '.')
            dots++;
        else
            nums++;
    }
    return nums > 0 && dots <= 1 && n < 64;
}

/* Bytes a tqdm bar never holds: letters, a token's first byte, line and segment ends. */
static unsigned char not_bar[256];

static int literal(const char **p, const char *e, const char *lit)
{
    size_t n = strlen(lit);
    if ((size_t)(e - *p) < n || memcmp(*p, lit, n) != 0)
        return 0;
    *p += n;
    return 1;
}

static void spaces(const char **p, const char *e)
{
    while (*p < e && **p == ' ')
        (*p)++;
}

/* `  12%|███▌      | 120/1000 [01:23<10:12,  1.44it/s]`: nothing before or after in its segment. */
static int parse_frame(const char *p, const char *e, frame_t *f)
{
    long long pct;
    const char *s;
    spaces(&p, e);
    if (!digits(&p, e, &pct) || !literal(&p, e, "%|"))
        return 0;
    while (p < e && *p != '|')  /* the bar: glyphs and spaces */
        if (not_bar[(unsigned char)*p++])
            return 0;
    if (!literal(&p, e, "|"))
        return 0;
    spaces(&p, e);
    if (!digits(&p, e, &f->step) || !literal(&p, e, "/") || !digits(&p, e, &f->total))
        return 0;
    spaces(&p, e);
    if (!literal(&p, e, "["))
        return 0;
    for (s = p; p < e && ((*p >= '0' && *p <= '9') || *p == ':'); p++)
        ;
    if (p == s || !literal(&p, e, "<"))
        return 0;
    for (s = p; p < e && ((*p >= '0' && *p <= '9') || *p == ':' || *p == '?'); p++)
        ;
    if (p == s)
        return 0;
    f->rem = s;
    f->rem_len = p - s;
    f->unit = 0;
    if (literal(&p, e, ",")) {
        spaces(&p, e);
        if (!literal(&p, e, "?it/s")) {
            for (s = p; p < e && ((*p >= '0' && *p <= '9') || *p == '.'); p++)
                ;
            if (!decimal(s, p - s))
                return 0;
            f->rate = s;
            f->rate_len = p - s;
            f->unit = literal(&p, e, "it/s") ? 1 : literal(&p, e, "s/it") ? 2 : 0;
            if (!f->unit)
                return 0;
        }
    }
    return literal(&p, e, "]") && p == e;
}

/* {'loss': '2.1', 'grad_norm': '0.45', 'learning_rate': '1e-4', 'epoch': '0.02'} (5.x) or unquoted floats (4.x) */
static int parse_dict(const char *p, const char *e, dict_t *d)
{
    static const char *keys[4] = {"{'loss': ", ", 'grad_norm': ", ", 'learning_rate': ", ", 'epoch': "};
    spaces(&p, e);
    for (int i = 0; i < 4; i++) {
        const char *s;
        int quoted;
        if (!literal(&p, e, keys[i]))
            return 0;
        quoted = literal(&p, e, "'");
        for (s = p; p < e && ((*p >= '0' && *p <= '9') || *p == '.' || *p == 'e' || *p == 'E' || *p == '-' || *p == '+'); p++)
            ;
        d->raw[i] = s;
        d->raw_len[i] = p - s;
        if (!number(s, p - s, &d->v[i]) || (quoted && !literal(&p, e, "'")))
            return 0;
    }
    return literal(&p, e, "}") && p == e;
}

static int is_blank(const char *p, const char *e)
{
    spaces(&p, e);
    return p == e;
}

/* Bytes of a frame LogParser skips over: digits, spaces, tqdm's punctuation, the letters of it/s and
 * s/it, '#' and the bar's glyphs. No token ({' %| *****) can start with them and no word LogParser
 * looks for (every one has another letter) can be spelt with them. */
static unsigned char frame_byte[256];

static void add_event(event_t *ev, int *n, const frame_t *f)
{
    ev[*n].is_dict = 0;
    ev[(*n)++].f = *f;
}

/* The line's events in LogParser's order: per run of frames, its first frame and its last training
 * frame after that (the frames between are superseded); each metric dict. 0 when the line is not of
 * the simple shape. */
static int read_line(const char *p, const char *e, long long train_total, int pending, event_t *ev, int *count)
{
    int n = 0;
    while (1) {
        const char *seg_end = memchr(p, '\r', e - p);
        if (!seg_end)
            seg_end = e;
        if (is_blank(p, seg_end)) {
            if (seg_end == e)
                break;
            p = seg_end + 1;
            continue;
        }
        if (n > MAX_EVENTS - 2)
            return 0;
        frame_t f;
        if (parse_frame(p, seg_end, &f)) {
            const char *run_start = seg_end, *q = seg_end;
            add_event(ev, &n, &f);
            if (train_total < 0 || f.total == train_total)
                pending = 0;
            while (q < e) {  /* the run goes on to a metric dict or the end of the line */
                const char *r = q + 1, *t = r;
                spaces(&t, e);
                if (t < e && *t == '{')
                    break;
                while (r < e && frame_byte[(unsigned char)*r])
                    r++;
                if (r < e && *r != '\r')
                    return 0;  /* a byte no frame holds: another shape */
                q = r;
            }
            for (const char *s_end = q; s_end > run_start;) {  /* the last training frame, from the end */
                const char *s_start = s_end;
                while (s_start[-1] != '\r')
                    s_start--;
                frame_t g;
                if (!is_blank(s_start, s_end)) {
                    if (!parse_frame(s_start, s_end, &g))
                        return 0;
                    if (train_total < 0 || g.total == train_total) {
                        add_event(ev, &n, &g);
                        pending = 0;
                        break;
                    }
                }
                s_end = s_start - 1;
            }
            if (q == e)
                break;
            p = q + 1;
            continue;
        }
        if (pending || !parse_dict(p, seg_end, &ev[n].d))
            return 0;  /* another shape, or a second dict before a step was known for the first */
        ev[n++].is_dict = 1;
        pending = 1;
        if (seg_end == e)
            break;
        p = seg_end + 1;
    }
    *count = n;
    return 1;
}

typedef struct {
    PyObject *out, *point, *progress, *clock;
    long long train_total;
    PyObject *last_step;          /* int or None */
    PyObject *frame;              /* (line, step, total, rate, eta) or None */
    PyObject *pending_original;   /* the (values, line) it was given, while unreleased */
    PyObject *pending[4];         /* loss, lr, grad_norm, epoch as floats or None, while a dict waits */
    long long pending_line;
    int has_pending;
    dict_t pending_dict;
    int pending_from_c;
} state_t;

static PyObject *record(PyObject *type, int n, PyObject **items)
{
    PyTypeObject *t = (PyTypeObject *)type;
    PyObject *o = t->tp_alloc(t, n);  /* a NamedTuple: a tuple subclass, as tuple.__new__ builds it */
    if (!o) {
        for (int i = 0; i < n; i++)
            Py_XDECREF(items[i]);
        return NULL;
    }
    for (int i = 0; i < n; i++)
        PyTuple_SET_ITEM(o, i, items[i]);
    PyObject_GC_UnTrack(o);  /* numbers and None only: no cycle to find, as CPython itself would conclude */
    return o;
}

static int append(PyObject *out, PyObject *o)
{
    if (!o)
        return -1;
    int r = PyList_Append(out, o);
    Py_DECREF(o);
    return r;
}

static int emit_frame(state_t *s)
{
    PyObject *f = s->frame;
    PyObject *items[5];
    int order[5] = {1, 2, 3, 4, 0};  /* Progress(step, total, rate, eta, line) from (line, step, total, rate, eta) */
    for (int i = 0; i < 5; i++) {
        items[i] = PyTuple_GET_ITEM(f, order[i]);
        Py_INCREF(items[i]);
    }
    s->frame = NULL;
    int r = append(s->out, record(s->progress, 5, items));
    Py_DECREF(f);
    return r;
}

static void drop_pending(state_t *s)
{
    for (int i = 0; i < 4; i++)
        Py_CLEAR(s->pending[i]);
    Py_CLEAR(s->pending_original);
    s->has_pending = 0;
    s->pending_from_c = 0;
}

static int on_frame(state_t *s, const frame_t *f, long long line)
{
    PyObject *rate = Py_None, *eta;
    double r = 0;
    if (s->train_total >= 0 && f->total != s->train_total)
        return 0;  /* an evaluation or data-loading bar */
    if (f->unit) {
        double parsed;
        if (!number(f->rate, f->rate_len, &parsed)) {
            PyErr_SetString(PyExc_ValueError, "unparsable tqdm rate");  /* decimal() let through what float() refuses */
            return -1;
        }
        r = f->unit == 2 ? (parsed != 0 ? 1 / parsed : 0) : parsed;
        if (f->unit == 1 || parsed != 0)
            rate = PyFloat_FromDouble(r);
        else
            Py_INCREF(rate);
    } else {
        Py_INCREF(rate);
    }
    if (!rate)
        return -1;
    if (rate != Py_None && r != 0) {
        eta = PyFloat_FromDouble((double)(f->total - f->step) / r);
    } else {
        PyObject *rem = PyUnicode_DecodeASCII(f->rem, f->rem_len, NULL);
        eta = rem ? PyObject_CallOneArg(s->clock, rem) : NULL;
        Py_XDECREF(rem);
    }
    PyObject *step = PyLong_FromLongLong(f->step);
    PyObject *frame = PyTuple_New(5);
    PyObject *items[5] = {PyLong_FromLongLong(line), step, PyLong_FromLongLong(f->total), rate, eta};
    if (!frame || !eta || !items[0] || !step || !items[2]) {
        Py_XDECREF(frame);
        for (int i = 0; i < 5; i++)
            Py_XDECREF(items[i]);
        return -1;
    }
    for (int i = 0; i < 5; i++)
        PyTuple_SET_ITEM(frame, i, items[i]);
    PyObject_GC_UnTrack(frame);
    Py_INCREF(step);  /* one reference in the frame, one as last_step */
    Py_XSETREF(s->last_step, step);
    Py_XSETREF(s->frame, frame);
    if (s->has_pending) {  /* the waiting metric dict was logged at this step */
        PyObject *items[6];
        items[0] = PyLong_FromLongLong(f->step);
        for (int i = 0; i < 4; i++) {
            items[i + 1] = s->pending[i];
            s->pending[i] = NULL;
        }
        items[5] = PyLong_FromLongLong(s->pending_line);
        drop_pending(s);
        if (!items[0] || !items[5]) {
            for (int i = 0; i < 6; i++)
                Py_XDECREF(items[i]);
            return -1;
        }
        return append(s->out, record(s->point, 6, items));
    }
    return 0;
}

static int on_dict(state_t *s, const dict_t *d, long long line)
{
    static const int order[4] = {0, 2, 1, 3};  /* Point's loss, lr, grad_norm, epoch */
    for (int i = 0; i < 4; i++)
        if (!(s->pending[i] = PyFloat_FromDouble(d->v[order[i]])))
            return -1;
    s->pending_dict = *d;
    s->pending_line = line;
    s->has_pending = 1;
    s->pending_from_c = 1;
    return 0;
}

/* _number(values.get(key)) of LogParser: float(value), None when absent or not a number. */
static PyObject *as_number(PyObject *values, const char *key)
{
    PyObject *v = PyDict_Check(values) ? PyDict_GetItemString(values, key) : NULL;
    if (!v)
        Py_RETURN_NONE;
    PyObject *f = PyNumber_Float(v);
    if (!f && (PyErr_ExceptionMatches(PyExc_ValueError) || PyErr_ExceptionMatches(PyExc_TypeError))) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    return f;
}

static PyObject *pending_out(state_t *s)
{
    static const char *keys[4] = {"loss", "grad_norm", "learning_rate", "epoch"};
    if (!s->has_pending)
        Py_RETURN_NONE;
    if (!s->pending_from_c) {
        Py_INCREF(s->pending_original);
        return s->pending_original;
    }
    PyObject *values = PyDict_New();
    if (!values)
        return NULL;
    for (int i = 0; i < 4; i++) {
        PyObject *v = PyUnicode_DecodeASCII(s->pending_dict.raw[i], s->pending_dict.raw_len[i], NULL);
        if (!v || PyDict_SetItemString(values, keys[i], v) < 0) {
            Py_XDECREF(v);
            Py_DECREF(values);
            return NULL;
        }
        Py_DECREF(v);
    }
    return Py_BuildValue("(NL)", values, s->pending_line);
}

static PyObject *scan(PyObject *self, PyObject *args)
{
    Py_buffer buf;
    Py_ssize_t pos;
    long long line;
    PyObject *train_total, *last_step, *frame, *pending;
    state_t s = {0};
    if (!PyArg_ParseTuple(args, "y*nLOOOOO!OOO", &buf, &pos, &line, &train_total, &last_step, &frame, &pending,
                          &PyList_Type, &s.out, &s.point, &s.progress, &s.clock))
        return NULL;
    const char *data = buf.buf;
    Py_ssize_t n = buf.len;
    PyObject *result = NULL;
    s.train_total = train_total == Py_None ? -1 : PyLong_AsLongLong(train_total);
    if (s.train_total == -1 && PyErr_Occurred())
        goto done;
    Py_INCREF(last_step);
    s.last_step = last_step;
    if (frame != Py_None) {
        Py_INCREF(frame);
        s.frame = frame;
    }
    if (pending != Py_None) {  /* (values, line) from the Python parser, still waiting for its step */
        PyObject *values = PyTuple_GetItem(pending, 0), *pl = PyTuple_GetItem(pending, 1);
        if (!values || !pl)
            goto done;
        static const char *keys[4] = {"loss", "learning_rate", "grad_norm", "epoch"};
        for (int i = 0; i < 4; i++)
            if (!(s.pending[i] = as_number(values, keys[i])))
                goto done;
        s.pending_line = PyLong_AsLongLong(pl);
        if (s.pending_line == -1 && PyErr_Occurred())
            goto done;
        Py_INCREF(pending);
        s.pending_original = pending;
        s.has_pending = 1;
    }
    while (pos <= n) {
        const char *start = data + pos;
        const char *nl = memchr(start, '\n', n - pos);
        const char *end = nl ? nl : data + n;
        event_t ev[MAX_EVENTS];
        int count;
        if (!read_line(start, end, s.train_total, s.has_pending, ev, &count))
            break;
        if (count && s.frame && PyLong_AsLongLong(PyTuple_GET_ITEM(s.frame, 0)) != line && emit_frame(&s) < 0)
            goto done;
        for (int i = 0; i < count; i++)
            if ((ev[i].is_dict ? on_dict(&s, &ev[i].d, line) : on_frame(&s, &ev[i].f, line)) < 0)
                goto done;
        pos = end - data + 1;
        line++;
    }
    {
        PyObject *p = pending_out(&s);
        if (p)
            result = Py_BuildValue("(nLOON)", pos, line, s.last_step, s.frame ? s.frame : Py_None, p);
        /* "N" took the pending tuple; last_step and the frame keep their own references, released below */
    }
done:
    Py_XDECREF(s.last_step);
    Py_XDECREF(s.frame);
    for (int i = 0; i < 4; i++)
        Py_XDECREF(s.pending[i]);
    Py_XDECREF(s.pending_original);
    PyBuffer_Release(&buf);
    return result;
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_VARARGS, "Parse simple training.log lines from an offset; see the module source."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fastlog", "The C hot path of lftop.logs.parse.", -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__fastlog(void)
{
    for (int c = 'A'; c <= 'Z'; c++)
        not_bar[c] = not_bar[c + 'a' - 'A'] = 1;
    not_bar['{'] = not_bar['*'] = not_bar['%'] = not_bar['\r'] = not_bar['\n'] = 1;
    for (const char *c = "0123456789 :.,<[]/%|?#its"; *c; c++)
        frame_byte[(unsigned char)*c] = 1;
    for (int c = 0x80; c < 0x100; c++)
        frame_byte[c] = 1;
    return PyModule_Create(&module);
}
