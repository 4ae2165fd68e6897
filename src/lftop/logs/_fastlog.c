/* The hot path of lftop.logs.parse.LogParser, in C: lines made only of tqdm frames, blank segments and
 * transformers' standard metric dict, which are nearly all of a long training.log.
 *
 * scan(data, pos, line, train_total, last_step, frame, pending, clock_seconds)
 * reads the lines of `data` from offset `pos` (line number `line`) as LogParser would, and stops at the
 * first line of any other shape (or with a second metric dict waiting for its step), returning
 * (pos, line, last_step, frame, pending, rows) for the Python parser to go on from (frame is the newest
 * training frame, of which LogParser makes the block's Progress record); pos is len(data) + 1 when every
 * line was read. rows is None or the points read, as columns (lftop.logs.records.Rows): no Python object
 * is made per point, which is what a long log holds millions of. Each line is checked whole before it changes any state, so a
 * line it does not take is left to Python untouched. A line holding none of the tokens LogParser acts
 * on (set once by tokens(), from lftop.logs.parse.TOKENS) yields no record and changes no state, so runs
 * of such lines are passed in one loop, a bit test a byte, without parsing them. A line holding an
 * escape or NUL byte (which LogParser's cleaning removes, joining what they split) always goes to Python. Values
 * the C types cannot hold (counts from Python of 2**63 or more) make scan decline: it returns its
 * inputs, and Python reads the line.
 * tests/test_logs.py holds both parsers to the same records on any log.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif
#if defined(__x86_64__) && defined(__GNUC__)
#include <tmmintrin.h>
#define NIBBLES 1  /* SSSE3's byte shuffle, used where the CPU has it (checked at run time) */
#endif

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

static const double exact_powers[23] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
                                        1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* float(s) for s of [0-9.eE+-]: 0 when float() would refuse it. A mantissa below 2**53 and a power
 * of ten up to 22 are exact doubles, so one multiplication or division rounds correctly (Clinger's
 * fast path); other numbers go to strtod, which also rounds correctly. */
static int number(const char *s, Py_ssize_t n, double *out)
{
    const char *p = s, *e = s + n;
    int negative = 0, digits_seen = 0, frac = 0, exp_sign = 1, exp = 0, exact = 1;
    unsigned long long m = 0;
    if (p < e && (*p == '+' || *p == '-'))
        negative = *p++ == '-';
    for (; p < e && *p >= '0' && *p <= '9'; p++, digits_seen++)
        if ((m = m * 10 + (*p - '0')) >= (1ULL << 53))
            exact = 0;
    if (p < e && *p == '.')
        for (p++; p < e && *p >= '0' && *p <= '9'; p++, digits_seen++, frac++)
            if ((m = m * 10 + (*p - '0')) >= (1ULL << 53))
                exact = 0;
    if (!digits_seen)
        return 0;
    if (p < e && (*p == 'e' || *p == 'E')) {
        const char *exp_start;
        p++;
        if (p < e && (*p == '+' || *p == '-'))
            exp_sign = *p++ == '-' ? -1 : 1;
        for (exp_start = p; p < e && *p >= '0' && *p <= '9'; p++)
            if (exp < 10000)
                exp = exp * 10 + (*p - '0');
        if (p == exp_start)
            return 0;
    }
    if (p != e)
        return 0;
    int power = exp_sign * exp - frac;
    if (exact && power >= -22 && power <= 22) {
        double v = (double)m;
        v = power >= 0 ? v * exact_powers[power] : v / exact_powers[-power];
        *out = negative ? -v : v;
        return 1;
    }
    char buf[64];
    char *end;
    if (n >= (Py_ssize_t)sizeof buf)
        return 0;
    memcpy(buf, s, n);
    buf[n] = 0;
    *out = strtod(buf, &end);  /* anything strtod does not read whole (another locale) is left to Python */
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

#define literal(p, e, lit) literal_n((p), (e), (lit), sizeof(lit) - 1)

static int literal_n(const char **p, const char *e, const char *lit, size_t n)
{
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

/* The tokens LogParser acts on, grouped by their first two bytes: pair_first[b0 << 8 | b1] is 1 + the
 * index of the first token starting with those bytes (0: none), the tokens being sorted. stop_pair has
 * a bit for each such pair and for every pair starting with a newline, an escape or NUL: one bit test a
 * byte finds where a line ends and where one may hold a token. */
#define MAX_TOKENS 64
static char *tokens_[MAX_TOKENS];
static Py_ssize_t token_len[MAX_TOKENS];
static int n_tokens;
static unsigned char pair_first[65536];
static unsigned char stop_pair[65536 / 8];

#define PAIR(p) ((unsigned char)(p)[0] << 8 | (unsigned char)(p)[1])
#define STOPS(h) (stop_pair[(h) >> 3] & (1 << ((h) & 7)))

static int token_at(const char *p, const char *e)
{
    int first = pair_first[PAIR(p)];
    if (!first)
        return 0;
    for (int t = first - 1; t < n_tokens && tokens_[t][0] == p[0] && tokens_[t][1] == p[1]; t++)
        if (e - p >= token_len[t] && memcmp(p, tokens_[t], token_len[t]) == 0)
            return 1;
    return 0;
}

static int has_token(const char *p, const char *e)
{
    if (!n_tokens)
        return 1;  /* tokens() not called: every line is Python's */
    for (; p < e; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == 0x1b || c == 0)
            return 1;  /* LogParser's cleaning removes these, joining what they split */
        if (e - p >= 2 && token_at(p, e))
            return 1;
    }
    return 0;
}

/* Candidate token starts, 16 positions at a time (the idea of Hyperscan's Teddy): each token's first two
 * bytes are put in one of 8 buckets, and a position is a candidate when, for some bucket, the low and
 * high nibbles of its byte and of the next are all ones that bucket's tokens have. A candidate is then
 * checked exactly; most positions of ordinary text are none. Buckets are chosen so that common bytes
 * (English letter frequencies) share few: fewer false candidates. */
static unsigned char nib_lo0[16], nib_hi0[16], nib_lo1[16], nib_hi1[16];
static int nibbles_on;

static double byte_freq(unsigned c)
{
    static const char order[] = "etaoinshrdlcumwfgypbvkjxqz";
    static const double english[] = {12.7, 9.1, 8.2, 7.5, 7.0, 6.7, 6.3, 6.1, 6.0, 4.3, 4.0, 2.8, 2.8,
                                     2.4, 2.4, 2.2, 2.0, 2.0, 1.9, 1.5, 1.0, 0.8, 0.15, 0.15, 0.1, 0.07};
    const char *at = c >= 'a' && c <= 'z' ? strchr(order, (int)c) : c >= 'A' && c <= 'Z' ? strchr(order, (int)c + 32) : NULL;
    if (at)
        return english[at - order] / (c <= 'Z' ? 10 : 1);
    return c == ' ' ? 15 : c >= '0' && c <= '9' ? 2 : 0.05;
}

/* The share of byte pairs a bucket of these nibble sets lets through, bytes taken as independent. */
static double bucket_cost(const unsigned char *lo0, const unsigned char *hi0, const unsigned char *lo1,
                          const unsigned char *hi1, int bit)
{
    double p0 = 0, p1 = 0;
    for (unsigned x = 0; x < 256; x++) {
        if ((lo0[x & 15] & hi0[x >> 4]) & bit)
            p0 += byte_freq(x);
        if ((lo1[x & 15] & hi1[x >> 4]) & bit)
            p1 += byte_freq(x);
    }
    return p0 * p1;
}

static void build_nibbles(void)
{
    unsigned char done[256] = {0};
    memset(nib_lo0, 0, 16), memset(nib_hi0, 0, 16), memset(nib_lo1, 0, 16), memset(nib_hi1, 0, 16);
    for (;;) {  /* first bytes, most frequent first, each to the bucket it costs least */
        int first = -1;
        for (int t = 0; t < n_tokens; t++) {
            unsigned char c = (unsigned char)tokens_[t][0];
            if (!done[c] && (first < 0 || byte_freq(c) > byte_freq((unsigned)first)))
                first = c;
        }
        if (first < 0)
            break;
        done[first] = 1;
        int best = 0;
        double best_cost = 0;
        for (int k = 0; k < 8; k++) {
            unsigned char lo0[16], hi0[16], lo1[16], hi1[16];
            memcpy(lo0, nib_lo0, 16), memcpy(hi0, nib_hi0, 16), memcpy(lo1, nib_lo1, 16), memcpy(hi1, nib_hi1, 16);
            for (int t = 0; t < n_tokens; t++) {
                if ((unsigned char)tokens_[t][0] != first)
                    continue;
                unsigned char b = (unsigned char)tokens_[t][1];
                lo0[first & 15] |= 1 << k, hi0[first >> 4] |= 1 << k, lo1[b & 15] |= 1 << k, hi1[b >> 4] |= 1 << k;
            }
            double cost = bucket_cost(lo0, hi0, lo1, hi1, 1 << k) - bucket_cost(nib_lo0, nib_hi0, nib_lo1, nib_hi1, 1 << k);
            if (k == 0 || cost < best_cost)
                best = k, best_cost = cost;
        }
        for (int t = 0; t < n_tokens; t++) {
            if ((unsigned char)tokens_[t][0] != first)
                continue;
            unsigned char b = (unsigned char)tokens_[t][1];
            nib_lo0[first & 15] |= 1 << best, nib_hi0[first >> 4] |= 1 << best;
            nib_lo1[b & 15] |= 1 << best, nib_hi1[b >> 4] |= 1 << best;
        }
    }
}

#ifdef NIBBLES
/* From p, the first position that needs a closer look (a candidate, an escape or NUL), or where fewer
 * than 17 bytes are left; counts the newlines passed and moves *start to the line they begin. */
__attribute__((target("ssse3"))) static const char *skip_nibbles(const char *p, const char *e, const char **start,
                                                                   long long *line)
{
    const __m128i lo0 = _mm_loadu_si128((const __m128i *)nib_lo0), hi0 = _mm_loadu_si128((const __m128i *)nib_hi0),
                  lo1 = _mm_loadu_si128((const __m128i *)nib_lo1), hi1 = _mm_loadu_si128((const __m128i *)nib_hi1),
                  low = _mm_set1_epi8(0x0f), nl = _mm_set1_epi8('\n'), esc = _mm_set1_epi8(0x1b),
                  zero = _mm_setzero_si128();
    for (; e - p >= 17; p += 16) {
        __m128i v0 = _mm_loadu_si128((const __m128i *)p), v1 = _mm_loadu_si128((const __m128i *)(p + 1));
        __m128i c0 = _mm_and_si128(_mm_shuffle_epi8(lo0, _mm_and_si128(v0, low)),
                                   _mm_shuffle_epi8(hi0, _mm_and_si128(_mm_srli_epi16(v0, 4), low)));
        __m128i c1 = _mm_and_si128(_mm_shuffle_epi8(lo1, _mm_and_si128(v1, low)),
                                   _mm_shuffle_epi8(hi1, _mm_and_si128(_mm_srli_epi16(v1, 4), low)));
        unsigned look = ~_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_and_si128(c0, c1), zero)) & 0xffff;
        look |= _mm_movemask_epi8(_mm_or_si128(_mm_cmpeq_epi8(v0, esc), _mm_cmpeq_epi8(v0, zero)));
        unsigned lines = _mm_movemask_epi8(_mm_cmpeq_epi8(v0, nl));
        if (look)
            lines &= (1u << __builtin_ctz(look)) - 1;  /* only those before the first candidate */
        if (lines) {
            *start = p + (31 - __builtin_clz(lines)) + 1;
            for (; lines; lines &= lines - 1)
                (*line)++;
        }
        if (look)
            return p + __builtin_ctz(look);
    }
    return p;
}
#endif

/* The start of the first line at or after p (a line start) that may hold a token, an escape or NUL,
 * adding to *line the newlines passed; NULL when none does, every newline before e counted. Lines
 * without one (a long log's checkpoint saves, its start-up) yield nothing: they are passed unparsed. */
static const char *next_line_of_interest(const char *p, const char *e, long long *line)
{
    const char *start = p;
    if (!n_tokens)
        return p;  /* tokens() not called: every line is read */
    for (; e - p >= 2; p++) {
#ifdef NIBBLES
        if (nibbles_on && (p = skip_nibbles(p, e, &start, line), e - p < 2))
            break;
#endif
        unsigned h = PAIR(p);
        if (!STOPS(h))
            continue;
        if (*p == '\n') {
            (*line)++;
            start = p + 1;
        } else if (*p == 0x1b || *p == 0 || token_at(p, e)) {
            return start;
        }
    }
    if (p < e && (*p == 0x1b || *p == 0))
        return start;
    if (p < e && *p == '\n')
        (*line)++;
    return NULL;  /* a token is two bytes or more: each that fits was looked for */
}

/* `  12%|███▌      | 120/1000 [01:23<10:12,  1.44it/s]`: nothing before it in its segment, and after it
 * only text without a token (spaces tqdm pads with; a logger line glued to the bar, which LogParser
 * reads as nothing). */
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
    return literal(&p, e, "]") && (p == e || !has_token(p, e));
}

/* {'loss': '2.1', 'grad_norm': '0.45', 'learning_rate': '1e-4', 'epoch': '0.02'} (5.x) or unquoted floats (4.x) */
static int parse_dict(const char *p, const char *e, dict_t *d)
{
    static const char *keys[4] = {"{'loss': ", ", 'grad_norm': ", ", 'learning_rate': ", ", 'epoch': "};
    static const size_t key_len[4] = {9, 15, 19, 11};
    spaces(&p, e);
    for (int i = 0; i < 4; i++) {
        const char *s;
        int quoted;
        if (!literal_n(&p, e, keys[i], key_len[i]))
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

static const char SPACES[64] = "                                                                ";

static int is_blank(const char *p, const char *e)  /* memcmp: a blank tqdm segment is some 60 spaces */
{
    for (; e - p >= 64; p += 64)
        if (memcmp(p, SPACES, 64) != 0)
            return 0;
    return memcmp(p, SPACES, e - p) == 0;
}

/* The bytes that end a superseded frame early: the segment's end, the first byte of a token ({' and
 * *****), escapes and NUL (which LogParser's cleaning removes), and one letter of each word LogParser
 * looks for: every one holds r, c, C, K or o (tests/test_logs.py checks the list against STOP). A
 * frame LogParser skips over holds none of them, so it need not be parsed, only scanned. */
static const char STOP[] = "\r{*rcCKo\x1b";
static unsigned char stop_byte[256];

static const char *skip_frame(const char *r, const char *e)
{
#ifdef __SSE2__
    const __m128i cr = _mm_set1_epi8('\r'), brace = _mm_set1_epi8('{'), star = _mm_set1_epi8('*'),
                  lr = _mm_set1_epi8('r'), lc = _mm_set1_epi8('c'), uc = _mm_set1_epi8('C'),
                  uk = _mm_set1_epi8('K'), lo = _mm_set1_epi8('o'), esc = _mm_set1_epi8('\x1b'), zero = _mm_setzero_si128();
    for (; e - r >= 16; r += 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)r);
        __m128i hit = _mm_or_si128(
            _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, cr), _mm_cmpeq_epi8(v, brace)),
                         _mm_or_si128(_mm_cmpeq_epi8(v, star), _mm_cmpeq_epi8(v, lr))),
            _mm_or_si128(_mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, lc), _mm_cmpeq_epi8(v, uc)),
                                      _mm_or_si128(_mm_cmpeq_epi8(v, uk), _mm_cmpeq_epi8(v, lo))),
                         _mm_or_si128(_mm_cmpeq_epi8(v, esc), _mm_cmpeq_epi8(v, zero))));
        int mask = _mm_movemask_epi8(hit);
        if (mask)
            return r + __builtin_ctz(mask);
    }
#endif
    while (r < e && !stop_byte[(unsigned char)*r])
        r++;
    return r;
}

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
            const char *starts[8];  /* where the run's last segments start, newest at seen % 8 */
            int seen = 0;
            add_event(ev, &n, &f);
            if (train_total < 0 || f.total == train_total)
                pending = 0;
            while (q < e) {  /* the run goes on to a metric dict or the end of the line */
                const char *r = skip_frame(q + 1, e);
                if (r < e && *r == '{' && is_blank(q + 1, r))
                    break;  /* a metric dict's segment */
                if (r < e && *r != '\r')
                    return 0;  /* a token or a word LogParser would act on: the line is Python's */
                starts[seen++ % 8] = q + 1;
                q = r;
            }
            int back = 0;
            for (const char *s_end = q; s_end > run_start;) {  /* the last training frame, from the end */
                const char *s_start = s_end;
                if (++back <= seen && back <= 8)
                    s_start = starts[(seen - back) % 8];
                else
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
    double value;
    int none;
} opt_t;  /* a float or None */

typedef struct {
    long long line, step, total;
    opt_t rate, eta;
    int timed;    /* rate and eta are known; else they come from `raw` when the frame is emitted or returned */
    frame_t raw;
} cframe_t;  /* LogParser._frame: the newest training frame, not yet a Progress record */

typedef struct {
    long long step, line;
    double v[4];  /* loss, lr, grad_norm, epoch: Point's order */
} row_t;

typedef struct {
    PyObject *clock;
    row_t *rows;                  /* the points read, in order */
    Py_ssize_t n_rows, cap_rows;
    int increasing, finite;       /* each step above the one before; every loss and grad norm finite */
    long long train_total;
    PyObject *last_step_in;       /* as given, until a frame here sets it */
    long long last_step;
    int last_step_set;
    cframe_t frame;
    int has_frame;
    PyObject *pending_original;   /* the (values, line) it was given, while unreleased */
    opt_t pending[4];             /* loss, lr, grad_norm, epoch of the dict waiting for its step */
    long long pending_line;
    int has_pending, pending_from_c, pending_incomplete;
    dict_t pending_dict;
} state_t;

static PyObject *opt_object(opt_t o)
{
    if (o.none)
        Py_RETURN_NONE;
    return PyFloat_FromDouble(o.value);
}

static int opt_from(PyObject *v, opt_t *o)
{
    o->none = v == Py_None;
    o->value = o->none ? 0 : PyFloat_AsDouble(v);
    return o->none || !(o->value == -1 && PyErr_Occurred());
}

static int add_row(state_t *s, long long step)
{
    if (s->n_rows == s->cap_rows) {
        Py_ssize_t cap = s->cap_rows ? s->cap_rows * 2 : 1024;
        row_t *grown = PyMem_Realloc(s->rows, cap * sizeof(row_t));
        if (!grown) {
            PyErr_NoMemory();
            return -1;
        }
        s->rows = grown, s->cap_rows = cap;
    }
    row_t *r = &s->rows[s->n_rows];
    if (s->n_rows && step <= r[-1].step)
        s->increasing = 0;
    r->step = step;
    r->line = s->pending_line;
    for (int i = 0; i < 4; i++)
        r->v[i] = s->pending[i].value;
    if (!isfinite(r->v[0]) || !isfinite(r->v[2]))
        s->finite = 0;
    s->n_rows++;
    return 0;
}

/* (steps, lines, values, increasing, finite): the rows as columns of int64, int64 and four doubles a row */
static PyObject *rows_out(state_t *s)
{
    Py_ssize_t n = s->n_rows;
    if (!n)
        Py_RETURN_NONE;
    PyObject *steps = PyBytes_FromStringAndSize(NULL, n * 8), *lines = PyBytes_FromStringAndSize(NULL, n * 8),
             *values = PyBytes_FromStringAndSize(NULL, n * 32);
    if (!steps || !lines || !values) {
        Py_XDECREF(steps);
        Py_XDECREF(lines);
        Py_XDECREF(values);
        return NULL;
    }
    long long *st = (long long *)PyBytes_AS_STRING(steps), *ln = (long long *)PyBytes_AS_STRING(lines);
    double *v = (double *)PyBytes_AS_STRING(values);
    for (Py_ssize_t i = 0; i < n; i++) {
        st[i] = s->rows[i].step;
        ln[i] = s->rows[i].line;
        memcpy(v + 4 * i, s->rows[i].v, sizeof s->rows[i].v);
    }
    return Py_BuildValue("(NNNOO)", steps, lines, values, s->increasing ? Py_True : Py_False,
                         s->finite ? Py_True : Py_False);
}

/* LogParser._on_frame's rate and ETA, left until the frame is shown: most frames are superseded first. */
static int frame_times(state_t *s)
{
    cframe_t *c = &s->frame;
    const frame_t *f = &c->raw;
    if (c->timed)
        return 0;
    c->rate = c->eta = (opt_t){0, 1};
    if (f->unit) {
        double parsed;
        if (!number(f->rate, f->rate_len, &parsed)) {
            PyErr_SetString(PyExc_ValueError, "unparsable tqdm rate");  /* decimal() let through what float() refuses */
            return -1;
        }
        if (f->unit == 1)
            c->rate = (opt_t){parsed, 0};
        else if (parsed != 0)
            c->rate = (opt_t){1 / parsed, 0};
    }
    if (!c->rate.none && c->rate.value != 0) {
        c->eta = (opt_t){(double)(f->total - f->step) / c->rate.value, 0};
    } else {
        PyObject *rem = PyUnicode_DecodeASCII(f->rem, f->rem_len, NULL);
        PyObject *seconds = rem ? PyObject_CallOneArg(s->clock, rem) : NULL;
        int ok = seconds && opt_from(seconds, &c->eta);
        Py_XDECREF(rem);
        Py_XDECREF(seconds);
        if (!ok)
            return -1;
    }
    c->timed = 1;
    return 0;
}

static int on_frame(state_t *s, const frame_t *f, long long line)
{
    if (s->train_total >= 0 && f->total != s->train_total)
        return 0;  /* an evaluation or data-loading bar */
    s->frame = (cframe_t){line, f->step, f->total, {0, 1}, {0, 1}, 0, *f};
    s->has_frame = 1;
    s->last_step = f->step;
    s->last_step_set = 1;
    if (!s->has_pending)
        return 0;
    s->has_pending = s->pending_from_c = 0;  /* the waiting metric dict was logged at this step */
    Py_CLEAR(s->pending_original);
    return add_row(s, f->step);
}

static void on_dict(state_t *s, const dict_t *d, long long line)
{
    static const int order[4] = {0, 2, 1, 3};  /* Point's loss, lr, grad_norm, epoch */
    for (int i = 0; i < 4; i++)
        s->pending[i] = (opt_t){d->v[order[i]], 0};
    s->pending_dict = *d;
    s->pending_line = line;
    s->has_pending = s->pending_from_c = 1;
    Py_CLEAR(s->pending_original);
}

/* _number(values.get(key)) of LogParser: float(value), None when absent or not a number. */
static int as_number(PyObject *values, const char *key, opt_t *o)
{
    PyObject *v = PyDict_Check(values) ? PyDict_GetItemString(values, key) : NULL;
    *o = (opt_t){0, 1};
    if (!v)
        return 1;
    PyObject *f = PyNumber_Float(v);
    if (!f) {
        if (!PyErr_ExceptionMatches(PyExc_ValueError) && !PyErr_ExceptionMatches(PyExc_TypeError))
            return 0;
        PyErr_Clear();
        return 1;
    }
    *o = (opt_t){PyFloat_AS_DOUBLE(f), 0};
    Py_DECREF(f);
    return 1;
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

static PyObject *frame_out(state_t *s)
{
    cframe_t *f = &s->frame;
    if (!s->has_frame)
        Py_RETURN_NONE;
    if (frame_times(s) < 0)
        return NULL;
    PyObject *items[5] = {PyLong_FromLongLong(f->line), PyLong_FromLongLong(f->step), PyLong_FromLongLong(f->total),
                          opt_object(f->rate), opt_object(f->eta)};
    PyObject *t = PyTuple_New(5);
    for (int i = 0; i < 5; i++) {
        if (!t || !items[i]) {
            Py_XDECREF(t);
            for (int j = 0; j < 5; j++)
                Py_XDECREF(items[j]);
            return NULL;
        }
    }
    for (int i = 0; i < 5; i++)
        PyTuple_SET_ITEM(t, i, items[i]);
    return t;
}

/* 1: read; 0: an error is set; -1: a value beyond a long long (Python holds it; scan declines) */
static int overflowed(void)
{
    if (!PyErr_Occurred())
        return 1;
    if (!PyErr_ExceptionMatches(PyExc_OverflowError))
        return 0;
    PyErr_Clear();
    return -1;
}

static int state_in(state_t *s, PyObject *train_total, PyObject *frame, PyObject *pending)
{
    int ok;
    s->train_total = train_total == Py_None ? -1 : PyLong_AsLongLong(train_total);
    if (s->train_total == -1 && (ok = overflowed()) != 1)
        return ok;
    if (s->last_step_in != Py_None) {
        long long step = PyLong_AsLongLong(s->last_step_in);
        if (step == -1 && (ok = overflowed()) != 1)
            return ok;
    }
    if (frame != Py_None) {
        if (!PyTuple_Check(frame) || PyTuple_GET_SIZE(frame) != 5) {
            PyErr_SetString(PyExc_TypeError, "frame: (line, step, total, rate, eta)");
            return 0;
        }
        cframe_t *f = &s->frame;
        f->line = PyLong_AsLongLong(PyTuple_GET_ITEM(frame, 0));
        f->step = f->line == -1 && PyErr_Occurred() ? -1 : PyLong_AsLongLong(PyTuple_GET_ITEM(frame, 1));
        f->total = f->step == -1 && PyErr_Occurred() ? -1 : PyLong_AsLongLong(PyTuple_GET_ITEM(frame, 2));
        if ((ok = overflowed()) != 1)
            return ok;
        if (!opt_from(PyTuple_GET_ITEM(frame, 3), &f->rate) || !opt_from(PyTuple_GET_ITEM(frame, 4), &f->eta))
            return 0;
        f->timed = s->has_frame = 1;
    }
    if (pending != Py_None) {  /* (values, line) from the Python parser, still waiting for its step */
        static const char *keys[4] = {"loss", "learning_rate", "grad_norm", "epoch"};
        PyObject *values = PyTuple_GetItem(pending, 0), *pl = PyTuple_GetItem(pending, 1);
        if (!values || !pl)
            return 0;
        for (int i = 0; i < 4; i++) {
            if (!as_number(values, keys[i], &s->pending[i]))
                return 0;
            s->pending_incomplete |= s->pending[i].none;  /* a row holds four numbers: Python releases this one */
        }
        s->pending_line = PyLong_AsLongLong(pl);
        if (s->pending_line == -1 && (ok = overflowed()) != 1)
            return ok;
        Py_INCREF(pending);
        s->pending_original = pending;
        s->has_pending = 1;
    }
    return 1;
}

static int by_bytes(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static PyObject *set_tokens(PyObject *self, PyObject *arg)
{
    if (!PyTuple_Check(arg) || PyTuple_GET_SIZE(arg) > MAX_TOKENS) {
        PyErr_Format(PyExc_TypeError, "tokens: a tuple of at most %d bytes objects", MAX_TOKENS);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(arg); i++) {
        PyObject *t = PyTuple_GET_ITEM(arg, i);
        if (!PyBytes_Check(t) || PyBytes_GET_SIZE(t) < 2 || memchr(PyBytes_AS_STRING(t), 0, PyBytes_GET_SIZE(t))) {
            PyErr_SetString(PyExc_ValueError, "tokens: each of at least two bytes, none NUL");
            return NULL;
        }
    }
    for (int i = 0; i < n_tokens; i++)
        PyMem_Free(tokens_[i]);
    n_tokens = 0;
    memset(pair_first, 0, sizeof pair_first);
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(arg); i++) {
        PyObject *t = PyTuple_GET_ITEM(arg, i);
        Py_ssize_t len = PyBytes_GET_SIZE(t);
        if (!(tokens_[n_tokens] = PyMem_Malloc(len + 1)))
            return PyErr_NoMemory();
        memcpy(tokens_[n_tokens], PyBytes_AS_STRING(t), len + 1);
        n_tokens++;
    }
    qsort(tokens_, n_tokens, sizeof tokens_[0], by_bytes);
    memset(stop_pair, 0, sizeof stop_pair);
    for (int i = n_tokens - 1; i >= 0; i--) {
        unsigned h = PAIR(tokens_[i]);
        token_len[i] = (Py_ssize_t)strlen(tokens_[i]);
        pair_first[h] = (unsigned char)(i + 1);
        stop_pair[h >> 3] |= 1 << (h & 7);
    }
    build_nibbles();
    for (unsigned h = 0; h < 256; h++) {  /* any pair starting with a newline, an escape or NUL */
        for (unsigned first = 0; first < 3; first++) {
            unsigned pair = (unsigned)"\n\x1b\0"[first] << 8 | h;
            stop_pair[pair >> 3] |= 1 << (pair & 7);
        }
    }
    Py_RETURN_NONE;
}

static PyObject *scan(PyObject *self, PyObject *args)
{
    Py_buffer buf;
    Py_ssize_t pos;
    long long line;
    PyObject *train_total, *frame, *pending, *result = NULL;
    state_t s = {0};
    s.increasing = s.finite = 1;
    if (!PyArg_ParseTuple(args, "y*nLOOOOO", &buf, &pos, &line, &train_total, &s.last_step_in, &frame, &pending,
                          &s.clock))
        return NULL;
    const char *data = buf.buf;
    Py_ssize_t n = buf.len;
    if (pos < 0 || pos > n + 1 || line < 0 || line > LLONG_MAX - n - 1) {
        PyErr_Format(PyExc_ValueError, "scan: offset %zd or line %lld out of range for %zd bytes", pos, line, n);
        goto done;
    }
    int state = state_in(&s, train_total, frame, pending);
    if (state == 0)
        goto done;
    if (state < 0) {  /* declined: the inputs back, untouched */
        result = Py_BuildValue("(nLOOOO)", pos, line, s.last_step_in, frame, pending, Py_None);
        goto done;
    }
    while (pos <= n) {
        const char *start = next_line_of_interest(data + pos, data + n, &line);
        if (!start) {  /* the lines left hold nothing LogParser acts on */
            pos = n + 1;
            line++;
            break;
        }
        pos = start - data;
        const char *nl = memchr(start, '\n', n - pos);
        const char *end = nl ? nl : data + n;
        event_t ev[MAX_EVENTS];
        int count;
        if (!read_line(start, end, s.train_total, s.has_pending, ev, &count))
            break;  /* a line of another shape with a token: Python's */
        int releases = 0;  /* a frame that gives the waiting dict its step, which Python holds */
        for (int i = 0; i < count && s.has_pending && s.pending_incomplete; i++)
            releases |= !ev[i].is_dict && (s.train_total < 0 || ev[i].f.total == s.train_total);
        if (releases)
            break;
        for (int i = 0; i < count; i++) {
            if (ev[i].is_dict)
                on_dict(&s, &ev[i].d, line);
            else if (on_frame(&s, &ev[i].f, line) < 0)
                goto done;
        }
        pos = end - data + 1;
        line++;
    }
    PyObject *last_step = s.last_step_set ? PyLong_FromLongLong(s.last_step) : Py_NewRef(s.last_step_in);
    PyObject *frame_now = frame_out(&s), *pending_now = pending_out(&s), *rows = rows_out(&s);
    if (last_step && frame_now && pending_now && rows)
        result = Py_BuildValue("(nLNNNN)", pos, line, last_step, frame_now, pending_now, rows);
    else {
        Py_XDECREF(last_step);
        Py_XDECREF(frame_now);
        Py_XDECREF(pending_now);
        Py_XDECREF(rows);
    }
done:
    Py_XDECREF(s.pending_original);
    PyMem_Free(s.rows);
    PyBuffer_Release(&buf);
    return result;
}

static PyObject *count_lines(PyObject *self, PyObject *arg)
{
    Py_buffer buf;
    Py_ssize_t count = 0;
    if (PyObject_GetBuffer(arg, &buf, PyBUF_SIMPLE) < 0)
        return NULL;
    const char *p = buf.buf, *e = p + buf.len;
#ifdef __SSE2__
    /* a log's lines are short: a memchr call each costs more than counting 16 bytes at a time, in byte
     * counters (a match is -1) summed every 255 rounds, before one could overflow */
    const __m128i nl = _mm_set1_epi8('\n'), zero = _mm_setzero_si128();
    while (e - p >= 16) {
        __m128i acc = zero;
        for (int round = 0; round < 255 && e - p >= 16; round++, p += 16)
            acc = _mm_sub_epi8(acc, _mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)p), nl));
        __m128i sums = _mm_sad_epu8(acc, zero);
        count += _mm_cvtsi128_si32(sums) + _mm_cvtsi128_si32(_mm_srli_si128(sums, 8));
    }
#endif
    for (; p < e; p++)
        count += *p == '\n';
    PyBuffer_Release(&buf);
    return PyLong_FromSsize_t(count);
}

static PyObject *line_end(PyObject *self, PyObject *args)
{
    Py_buffer buf;
    Py_ssize_t pos;
    if (!PyArg_ParseTuple(args, "y*n", &buf, &pos))
        return NULL;
    Py_ssize_t end = buf.len;
    if (pos >= 0 && pos < buf.len) {
        const char *nl = memchr((const char *)buf.buf + pos, '\n', buf.len - pos);
        end = nl ? nl - (const char *)buf.buf : buf.len;
    }
    PyBuffer_Release(&buf);
    return PyLong_FromSsize_t(end);
}

static PyObject *use_simd(PyObject *self, PyObject *arg)
{
    int was = nibbles_on, want = PyObject_IsTrue(arg);
    if (want < 0)
        return NULL;
#ifdef NIBBLES
    nibbles_on = want && __builtin_cpu_supports("ssse3");
#endif
    return PyBool_FromLong(was);
}

static PyMethodDef methods[] = {
    {"use_simd", use_simd, METH_O, "use_simd(on): skip lines with SSSE3 where the CPU has it (on), or a byte at a time; the previous setting."},
    {"line_end", line_end, METH_VARARGS, "line_end(data, pos): the offset of the first newline at or after pos, or len(data)."},
    {"scan", scan, METH_VARARGS, "Parse simple training.log lines from an offset; see the module source."},
    {"newlines", count_lines, METH_O, "The number of newline bytes in a bytes-like object."},
    {"tokens", set_tokens, METH_O, "Set the tokens (a tuple of bytes) whose lines scan hands to Python."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fastlog", "The C hot path of lftop.logs.parse.", -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__fastlog(void)
{
#ifdef NIBBLES
    __builtin_cpu_init();
    nibbles_on = __builtin_cpu_supports("ssse3");
#endif
    for (int c = 'A'; c <= 'Z'; c++)
        not_bar[c] = not_bar[c + 'a' - 'A'] = 1;
    not_bar['{'] = not_bar['*'] = not_bar['%'] = not_bar['\r'] = not_bar['\n'] = 1;
    for (const char *c = STOP; *c; c++)
        stop_byte[(unsigned char)*c] = 1;
    stop_byte[0] = 1;
    PyObject *m = PyModule_Create(&module);
    if (m && PyModule_AddObject(m, "STOP", PyBytes_FromStringAndSize(STOP, sizeof STOP)) < 0) {  /* NUL included */
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
