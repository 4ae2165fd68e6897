import json
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lftop.logs import follower as follower_module
from lftop.logs import jsonl, parse, scan
from lftop.logs.follower import Follower, last_lines, whole_lines
from lftop.logs.history import History, RunLogs
from lftop.logs.parse import LogParser
from lftop.logs.records import Eval, Fact, Failure, Point, Progress, Rows, Summary, flat
from lftop.logs.tail import read_tail
from lftop.logs.text import clean

DATA = Path(__file__).parent / "data"


def parse_file(path: Path) -> list:
    """Every record of a finished log, read as lftop reads one: blocks of lines, then the last line."""
    follower, parser, found = Follower(path), LogParser(), []
    while (block := follower.read_block()).count:
        found += flat(parser.feed_block(block.first, block.data))
    if (last := follower.flush()).count:
        found += flat(parser.feed_block(last.first, last.data))
    return found + parser.finish()


def parse_text(text: str) -> list:
    parser = LogParser()
    return parser.feed_block(1, text) + parser.finish()


def records(name: str):
    return parse_file(DATA / name)


def test_transformers_5_string_metrics_behind_tqdm_frames():
    found = records("v5.log")
    points = [r for r in found if isinstance(r, Point)]
    assert [(p.step, p.loss, p.lr, p.grad_norm, p.epoch) for p in points] == [
        (2, 5.706, 0.0003333, 0.4521, 0.08), (4, 5.702, 0.0006667, 0.4509, 0.16), (6, 5.523, 0.001, 0.4321, 0.24)]
    assert [(e.step, e.eval_loss) for e in found if isinstance(e, Eval)] == [(4, 5.602)]
    assert all(p.total == 24 for p in found if isinstance(p, Progress))  # the 0/3 eval bar is not progress
    facts = {f.key: f.value for f in found if isinstance(f, Fact)}
    assert facts == {"world_size": "1", "device": "cpu", "trainable_params": "16384", "all_params": "128832",
                     "total_steps": "24", "resumed_from": "/home/user/lf/out/checkpoint-10"}
    (summary,) = [s for s in found if isinstance(s, Summary)]
    assert summary.metrics["train_loss"] == "5.5892" and summary.line == 12


def test_transformers_4_float_metrics():
    points = [r for r in records("v4.log") if isinstance(r, Point)]
    assert [(p.step, p.loss, p.grad_norm) for p in points] == [(1, 5.706, 0.45214736461639404), (2, 5.6, 0.5)]
    assert [p.line for p in points] == [1, 2]


def test_torchrun_failures_with_rank_prefixes():
    failures = [r for r in records("torchrun.log") if isinstance(r, Failure)]
    assert [(f.kind, f.line) for f in failures] == [("oom", 5), ("nccl", 8), ("traceback", 12), ("killed", 14)]
    assert failures[0].message == "CUDA out of memory: tried to allocate 1.96 GiB on GPU 0"


def test_a_traceback_ending_in_an_ordinary_error():
    text = ("Traceback (most recent call last):\n  File \"x.py\", line 1, in <module>\n"
            "ValueError: Output directory already exists\n")
    (failure,) = parse_text(text.rstrip("\n"))
    assert failure == Failure("traceback", "ValueError: Output directory already exists", 3)


def test_plain_error_words_outside_a_traceback_are_not_failures():
    text = "[WARNING|x] No metric eval_loss to plot.\nthe word Error in a sentence\nKeyError: not after a traceback\n"
    assert parse_text(text.rstrip("\n")) == []


def test_trainer_log_jsonl_with_garbage_eval_summary_and_vram():
    follower = Follower(DATA / "trainer_log.jsonl")
    lines = follower.read() + follower.flush().lines()
    history = History()
    for number, text in lines:
        history.add_jsonl(jsonl.parse_line(number, text))
    assert sorted(history.points) == [2, 4, 6, 8]
    assert history.evals[4].eval_loss == 5.602165222167969
    assert history.facts["vram_reserved"] == "4.0"
    # ETA from the step rate of this process (elapsed restarts at step 6): 2 steps in 4 s
    assert history.rate == 0.5 and history.eta_s == 32.0


def test_one_history_from_both_files_without_duplicates(tmp_path):
    log, trainer_log = tmp_path / "training.log", tmp_path / "trainer_log.jsonl"
    log.write_bytes((DATA / "v5.log").read_bytes())
    trainer_log.write_text("".join(
        json.dumps({"current_steps": s, "total_steps": 24, "loss": 5.0 + s / 100, "lr": 0.1, "epoch": s / 25,
                    "elapsed_time": f"0:00:0{s}"}) + "\n" for s in (2, 4)))
    logs = RunLogs(log, trainer_log)
    logs.poll()
    h = logs.history
    assert sorted(h.points) == [2, 4, 6]
    assert h.points[2].loss == 5.02 and h.points[2].grad_norm == 0.4521  # JSONL's loss, the log's grad norm
    assert h.points[6].loss == 5.523  # only in training.log
    assert h.series("loss") == [5.02, 5.04, 5.523]


def test_resume_from_an_earlier_checkpoint_counts_each_step_once():
    history = History()
    rows = [(s, 0) for s in (1, 2, 3, 4, 5)] + [(s, 1) for s in (4, 5, 6)]  # crashed at 5, resumed from 3
    for number, (step, segment) in enumerate(rows, 1):
        history.add_jsonl([Point(step, 10.0 - step + segment, 0.1, None, None, number)])
    assert sorted(history.points) == [1, 2, 3, 4, 5, 6]
    assert history.points[4].loss == 7.0  # the later report wins


# -- the follower ---------------------------------------------------------------------------------

def test_partial_lines_are_held_until_complete(tmp_path):
    path = tmp_path / "log"
    path.write_bytes(b"one\ntw")
    f = Follower(path)
    assert f.read() == [(1, "one")]
    with open(path, "ab") as out:
        out.write(b"o\nthree")
    assert f.read() == [(2, "two")]
    assert f.flush().lines() == [(3, "three")]


def test_truncation_and_replacement_start_again(tmp_path):
    path = tmp_path / "trainer_log.jsonl"
    path.write_text("a\nb\n")
    f = Follower(path)
    assert f.read() == [(1, "a"), (2, "b")]
    path.write_text("c\n")  # copytruncate: smaller than what was read
    assert f.read() == [(1, "c")] and f.resets == 1
    replacement = tmp_path / "new"
    replacement.write_text("d\ne\nf\n")
    os.replace(replacement, path)  # a new inode, even though it is longer
    assert f.read() == [(1, "d"), (2, "e"), (3, "f")] and f.resets == 2


def test_garbage_bytes_nul_ansi_and_a_10mb_line(tmp_path):
    path = tmp_path / "log"
    path.write_bytes(b"\xff\xfe\x00ok \x1b[31mred\x1b[0m\n" + b"x" * (10 << 20) + b"{'loss': 1.0}\n" + b"after\n")
    f = Follower(path, max_line=1 << 20)
    lines = f.read()
    assert lines[0] == (1, "\ufffd\ufffdok red")
    assert len(lines[1][1]) == 1 << 20 and lines[1][1].endswith("{'loss': 1.0}")  # the end of a long line survives
    assert lines[2] == (3, "after") and f.truncated_lines == 1


def test_the_tail_of_a_multi_gigabyte_log_is_read_from_its_end(tmp_path):
    path = tmp_path / "big.log"
    with open(path, "wb") as out:
        out.write(b"x" * 1000 + b"\n")
        out.seek(3 << 30)
        out.write("\n{'loss': '1.5', 'epoch': '0.5'}\n\r  7%|▋         | 7/100 [00:01<00:10,  9.0it/s]\n".encode())
    data = read_tail(path, 4096)
    assert data.startswith(b"{'loss'")  # the cut first line (of sparse zeros) is dropped
    assert last_lines(path, 2) == ["{'loss': '1.5', 'epoch': '0.5'}",
                                   "\r  7%|▋         | 7/100 [00:01<00:10,  9.0it/s]"]
    assert read_tail(tmp_path / "missing", 10) is None and last_lines(tmp_path / "missing", 3) == []


@settings(max_examples=60, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=12))
def test_any_split_into_writes_yields_the_same_records(tmp_path_factory, cuts):
    data = (DATA / "v5.log").read_bytes() + (DATA / "torchrun.log").read_bytes() + (DATA / "v4.log").read_bytes()
    whole_path = tmp_path_factory.mktemp("w") / "whole"
    whole_path.write_bytes(data)
    whole = parse_file(whole_path)
    path = tmp_path_factory.mktemp("s") / "log"
    path.write_bytes(b"")
    follower, parser, got = Follower(path), LogParser(), []
    bounds = sorted({min(c, len(data)) for c in cuts} | {len(data)})
    start = 0
    for end in bounds:
        with open(path, "ab") as out:
            out.write(data[start:end])
        start = end
        block = follower.read_block()  # many lines at once, as a history load reads them
        got += flat(parser.feed_block(block.first, block.data)) if block.count else []  # bytes: the C scanner's way
    if (last := follower.flush()).count:
        got += flat(parser.feed_block(last.first, last.data))
    got += parser.finish()
    events = [r for r in got if not isinstance(r, Progress)]  # a Progress is a block's newest frame
    assert events == [r for r in whole if not isinstance(r, Progress)]
    last = [r for r in got if isinstance(r, Progress)][-1:]
    assert last == [r for r in whole if isinstance(r, Progress)][-1:]


# -- the C scanner against the Python parser ------------------------------------------------------

def _frame(step: int, total: int, rate: str) -> str:
    bar = "█" * (step * 10 // total)
    return f"{step * 100 // total:3d}%|{bar:<10}| {step}/{total} [00:0{step % 10}<01:{step % 60:02d}{rate}]"


_RATES = [",  1.52it/s", ", 3.10s/it", ", ?it/s", "", ",  0.00it/s", ", 0.00s/it", ", 1.2.3it/s"]
_FRAMES = st.builds(_frame, st.integers(0, 30), st.sampled_from([30, 30, 30, 7]), st.sampled_from(_RATES))
_HUGE = "9" * 5000  # past int()'s 4300 digits
_GLUED_TEXT = [
    "[rank1]: Traceback (most recent call last):",
    "[rank5]:[E602 11:17:52.1 ProcessGroupNCCL.cpp:632] Watchdog caught collective",
    "[INFO|2024-12-08 01:10:34] llamafactory.train.callbacks:157 >> "
    "{'loss': 1.1000, 'learning_rate': 1.0e-05, 'epoch': 0.40}",
    "[INFO|trainer.py:3815] 2026-11-29 03:52:00,171 >> Saving model checkpoint to /tmp/out/checkpoint-50",
]
_PIECES = st.one_of(
    _FRAMES,
    st.builds(lambda loss, q: f"{{'loss': {q}{loss}{q}, 'grad_norm': {q}0.45{q}, 'learning_rate': {q}1e-05{q}, "
                              f"'epoch': {q}0.{loss[-1]}{q}}}", st.sampled_from(["2.1", "1.95", "0.5", "nan", "inf"]),
              st.sampled_from(["'", ""])),
    st.builds(str.__add__, _FRAMES, st.sampled_from(_GLUED_TEXT)),  # text glued to a bar
    st.sampled_from([
        " " * 20, "", "{'loss': '1.5', 'epoch': '0.5'}", "{'eval_loss': '1.9', 'epoch': '0.4'}",
        "{'train_runtime': '10.2', 'train_loss': '1.7', 'epoch': '1.0'}",
        "\x1b[31m 50%|#####| 15/30 [00:01<00:01, 9.0it/s]\x1b[0m",
        "[INFO|trainer.py:1478] 2026-11-22 07:52:57,024 >>   Total optimization steps = 30",
        "[INFO|2026-11-22 07:54:27] llamafactory.hparams.parser:144 >> Resuming training from /x/checkpoint-10.",
        "***** train metrics *****", "  train_loss               =     5.5892", "Traceback (most recent call last):",
        "  File \"x.py\", line 1, in <module>",
        "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0",
        "[rank1]: NCCL error: unhandled system error", "Killed", "garbage \udcff bytes",
        # other stages, nan and inf, a dict naming its step
        "{'loss': inf, 'grad_norm': nan, 'learning_rate': 1e-05, 'epoch': 0.3}",
        "{'loss': '0.69', 'grad_norm': '0.2', 'learning_rate': '1e-05', 'rewards/accuracies': '0.5', "
        "'rewards/margins': '0.01', 'epoch': '0.2'}",
        "{'eval_loss': '0.6', 'eval_rewards/accuracies': '1', 'epoch': '0.2'}", "{'loss': 1.25, 'step': 12}",
        # prefixes
        "[rank1]: Traceback (most recent call last):", "[rank1]:   File \"x.py\", line 3",
        "[rank1]: RuntimeError: boom",
        "stderr: Traceback (most recent call last):", "stderr: ValueError: bad", "[1234] {'loss': 2.5, 'epoch': 0.7}",
        "[1235]   3%|▎         | 3/30 [00:01<00:09,  3.0it/s]",
        # counts past a long long, and past int()'s digits
        " 50%|#####     | 9223372036854775808/18446744073709551616 [00:01<00:01,  9.0it/s]",
        f" 50%|#####     | {_HUGE}/30 [00:01<00:01,  9.0it/s]", f"  3%|          | 1/{_HUGE} [00:01<00:01,  9.0it/s]",
        "  Total optimization steps = 9223372036854775808", f"  Total optimization steps = {_HUGE}",
        "  Total optimization steps = ,",
        # lines without a token (the C scanner skips them), and tokens split by what cleaning removes
        '  "vocab_size": 384,',
        "[INFO|hub.py:364] 2026-11-29 03:51:59,025 >> Offline mode: forcing local_files_only=True",
        "Trace\x1b[0mback (most recent call last):", "  Total opti\x00mization steps = 40",
    ]),
)
_PROSE = st.text(alphabet="aeinorstcdkxCEKNTLIP[]|:.,'{}%* \"0123456789", max_size=70)  # bytes near tokens'
_PIECES = st.one_of(_PIECES, st.builds(lambda a, word, b: a + word + b, _PROSE, st.sampled_from(
    ["", "Killed", "NCCL", "nccl", "rror", "exitcode", "Traceback (most recent call last):", "{'loss': 1.5}", "%|",
     "*****", "Process rank: 0, world size: 2, device: cuda:0", "out of memory", "\x1b[0m", "\x00"]), _PROSE))
_LINES = st.lists(st.lists(_PIECES, min_size=0, max_size=6).map(lambda segs: "\r".join(segs)), min_size=1, max_size=30)


@pytest.fixture(scope="module", params=[True, False], ids=["simd", "byte-loop"])
def skip_mode(request):
    """The C scanner passes lines without a token 16 bytes at a time (SSSE3) or a byte at a time: both."""
    if parse.fastlog is None:
        pytest.skip("no C scanner")
    was = parse.fastlog.use_simd(request.param)
    yield request.param
    parse.fastlog.use_simd(was)


@settings(max_examples=400, deadline=None)
@given(lines=_LINES, cuts=st.lists(st.integers(0, 40), max_size=4))
def test_the_c_scanner_gives_exactly_the_python_parsers_records(skip_mode, lines, cuts):
    blocks, start = [], 0
    for cut in sorted({min(c, len(lines)) for c in cuts if c > 0}) + [len(lines)]:  # state crosses blocks
        if cut > start:
            blocks.append((start + 1, "\n".join(lines[start:cut]).encode("utf-8", "surrogateescape")))
            start = cut
    python, fast, expected, got = LogParser(), LogParser(), [], []
    for first, data in blocks:
        expected += python.feed_block(first, clean(data))  # text: the Python parser alone
        got += flat(fast.feed_block(first, data))  # bytes: the C scanner where it can
    assert repr(got + fast.finish()) == repr(expected + python.finish())  # repr: a nan loss equals itself


def _both_parsers(data: bytes) -> tuple[str, str]:
    python, fast = LogParser(), LogParser()
    expected = python.feed_block(1, clean(data)) + python.finish()
    got = flat(fast.feed_block(1, data)) + fast.finish()
    return repr(got), repr(expected)


@pytest.mark.parametrize("name", sorted(p.name for p in (DATA / "logs").glob("*.log")))
def test_real_logs_give_the_same_records_from_the_c_scanner(skip_mode, name):
    """Logs users posted and logs of real runs: every record, line numbers included, as Python reads them."""
    data = (DATA / "logs" / name).read_bytes().rstrip(b"\n")
    got, expected = _both_parsers(data)
    assert got == expected


def test_lines_without_tokens_are_counted_at_every_alignment(skip_mode):
    """Runs of lines without a token, of every length, between lines the parser acts on: their number
    is right whichever byte of a 16-byte stride each newline falls on."""
    lines = []
    for i in range(400):
        lines.append("x" * (i % 37) + ("" if i % 5 else "  config"))
        if i % 11 == 0:
            lines.append(f"RuntimeError: boom {i}" if i % 2 else "Killed")
        if i % 13 == 0:
            lines.append(f"{{'loss': {i}.5, 'grad_norm': 0.5, 'learning_rate': 1e-05, 'epoch': 0.{i}, 'step': {i}}}")
    got, expected = _both_parsers("\n".join(lines).encode())
    assert got == expected and got.count("Point(") == 31 and got.count("kind='killed'") == 19


def test_the_c_scanner_is_built_and_takes_the_common_lines():
    assert parse.fastlog is not None, "the install did not compile src/lftop/logs/_fastlog.c (is a C compiler there?)"
    data = ("\r" + _frame(1, 30, ",  1.52it/s") + "\r{'loss': '2.1', 'grad_norm': '0.45', 'learning_rate': '1e-05', "
            "'epoch': '0.1'}\n\r" + _frame(2, 30, ",  1.52it/s") + "\n").encode()
    pos, line, last_step, frame, pending, rows = parse.fastlog.scan(
        data, 0, 1, None, None, None, None, jsonl.clock_seconds)
    assert pos == len(data) + 1 and line == 4 and last_step == 2 and pending is None  # every line, in C
    assert Rows(*rows).points() == [Point(2, 2.1, 1e-05, 0.45, 0.1, 1)]  # as columns, not objects
    assert rows[3:] == (True, True)  # in step order; finite
    assert frame == (2, 2, 30, 1.52, 28 / 1.52)  # the newest frame: LogParser makes the block's Progress of it


def test_a_waiting_dict_without_a_grad_norm_leaves_only_its_release_to_python():
    """A dict Python holds (no grad_norm: rows hold four numbers) does not stop the C scanner from passing the
    lines that follow; it stops at the frame that gives the dict its step, for Python to read."""
    cold = b"\n".join([b'  "vocab_size": 384,'] * 50)
    frame = ("\r" + _frame(3, 30, ",  1.52it/s")).encode()
    data = cold + b"\n" + frame
    pending = ({"loss": "2.5", "learning_rate": "1e-05", "epoch": "0.1"}, 7)
    pos, line, _, _, held, rows = parse.fastlog.scan(data, 0, 8, None, 2, None, pending, jsonl.clock_seconds)
    assert (pos, line) == (len(cold) + 1, 58) and held == pending and rows is None
    fast, python = LogParser(), LogParser()
    text = "{'loss': '2.5', 'learning_rate': '1e-05', 'epoch': '0.1'}\n" + data.decode()
    assert repr(flat(fast.feed_block(1, text.encode())) + fast.finish()) == repr(python.feed_block(1, text) +
                                                                               python.finish())


def test_every_word_the_parser_acts_on_stops_the_c_scanners_skip():
    """The C scanner skips superseded frames unread unless they hold a byte of STOP: each word LogParser
    looks for must hold one, or a frame hiding it would be skipped by C and read by Python."""
    stop = set(parse.fastlog.STOP.decode())
    assert all(stop & set(word) for word in parse._RARE_WORDS)
    assert {"{", "*", "\r", "\x1b"} <= stop  # a dict's and a metrics header's first byte; a segment's end; escapes


def test_bad_counts_are_not_counts():
    """A total of no digits or past int()'s 4300 digits is no total; a frame of such a count is no frame."""
    text = "\n".join(["  Total optimization steps = ,", f"  Total optimization steps = {_HUGE}",
                      f"  3%|          | {_HUGE}/30 [00:01<00:01,  9.0it/s]",
                      "  3%|          | 1/30 [00:01<00:01,  9.0it/s]"])
    found = parse_text(text)
    assert [r for r in found if isinstance(r, Fact)] == []
    assert [(p.step, p.total) for p in found if isinstance(p, Progress)] == [(1, 30)]


def test_counts_past_a_long_long_are_read_in_python():
    big = 2**63
    text = f"  Total optimization steps = {big}\n  0%|          | {big - 5}/{big} [00:01<00:01,  9.0it/s]\n"
    python, fast = LogParser(), LogParser()
    expected = python.feed_block(1, text) + python.finish()
    got = flat(fast.feed_block(1, text.encode())) + fast.finish()  # the C scanner declines the total it cannot hold
    assert got == expected and expected[-1] == Progress(big - 5, big, 9.0, 5 / 9.0, 2)


def test_the_c_scanner_bounds_its_arguments():
    args = (None, None, None, None, jsonl.clock_seconds)
    for pos, line in ((-100, 1), (len(b"abc\n") + 2, 1), (0, -1), (0, 2**63 - 2)):
        with pytest.raises(ValueError):
            parse.fastlog.scan(b"abc\n", pos, line, *args)
    assert parse.fastlog.scan(b"abc\n", 5, 1, *args)[:2] == (5, 1)  # past the end: nothing left to read


def test_a_diverging_run_is_flagged_until_the_step_is_reported_again():
    history = History()
    history.add_log([Point(1, 2.0, None, 0.5, None, 1), Point(2, float("nan"), None, None, None, 2)])
    assert history.diverged_at == 2 and scan.to_json(history)["diverged_at"] == 2
    history.add_log([Point(2, 1.9, None, 0.4, None, 3)])  # resumed from before it, step 2 went well
    assert history.diverged_at is None


@pytest.mark.parametrize("content", [
    b"", b"\n", b"one", b"one\ntwo\n", b"one\n\nthree", b"a\n" + b"x" * 300 + b"\nb\n", b"x" * 700, b"\r\n" * 90,
])
@pytest.mark.parametrize("buffered", [True, False], ids=["buffer", "follower"])
def test_whole_lines_are_the_lines_a_follower_gives(tmp_path, monkeypatch, content, buffered):
    """`lftop scan` reads into one reused buffer (or, without the C scanner, through a follower), in blocks cut
    at newlines; the lines, their numbers and the cut of long lines (their last max_line bytes) are the follower's."""
    if not buffered:
        monkeypatch.setattr(follower_module, "fastlog", None)
    path = tmp_path / "log"
    path.write_bytes(content)
    follower = Follower(path, max_line=64)
    expected = follower.read_block().lines() + follower.flush().lines()
    got = list(enumerate((line for data in whole_lines(path, max_line=64, size=32)
                          for line in clean(data).split("\n")), 1))
    assert got == expected[:len(got)] and not any(line for _, line in expected[len(got):])  # but an empty last line


@pytest.mark.parametrize("name", ["made_here_dpo_lf095_tf56.log", "made_here_kto_lf095_tf56.log",
                                  "made_here_rm_lf095_tf56.log"])
def test_a_log_read_in_whole_line_blocks_numbers_its_lines_as_a_follower(name):
    """`lftop scan`'s blocks carry no line count: each starts at the line the parser says follows the last."""
    path = DATA / "logs" / name
    parser, first, got = LogParser(), 1, []
    for data in whole_lines(path, size=200):
        got += flat(parser.feed_block(first, data))
        first = parser.next_line
    got += parser.finish()
    whole = parse_file(path)
    events = [r for r in got if not isinstance(r, Progress)]  # a Progress is a block's newest frame
    assert repr(events) == repr([r for r in whole if not isinstance(r, Progress)])
    assert [r for r in got if isinstance(r, Progress)][-1:] == [r for r in whole if isinstance(r, Progress)][-1:]
    assert max(r.line for r in events) > 100  # records of later blocks


def test_a_log_truncated_while_scanned_ends_where_it_ends(tmp_path):
    """logrotate's copytruncate under a running `lftop scan`: the scan ends with what it read."""
    path = tmp_path / "log"
    path.write_bytes(b"".join(b"line %d\n" % i for i in range(1000)))
    blocks = whole_lines(path, max_line=64, size=256)
    first = bytes(next(blocks))
    os.truncate(path, 0)
    rest = [bytes(b) for b in blocks]  # at most the start of the line the first read ended in
    assert first.startswith(b"line 0\nline 1\n") and len(rest) <= 1 and b"\n" not in b"".join(rest)


def test_a_process_ended_by_a_signal_is_named_by_it_unless_its_log_names_the_cause(tmp_path):
    """A rank's SIGABRT (-6) is a `signal` failure named SIGABRT; when the log's tail says why (NCCL's watchdog
    aborts the process), that is the failure."""
    from lftop.logs.failures import classify_exit

    log = tmp_path / "training.log"
    log.write_text("step 5\n")
    assert classify_exit(-6, log) == ("signal", "ended by SIGABRT")
    assert classify_exit(-15, log) == ("signal", "ended by SIGTERM")
    assert classify_exit(3, log) == ("exit", "exited with code 3")
    log.write_text("[E ProcessGroupNCCL.cpp:475] [Rank 1] Watchdog caught collective operation timeout\n")
    assert classify_exit(-6, log)[0] == "nccl"


def _kinds(text: str) -> list[str]:
    parser = parse.LogParser()
    records = flat(parser.feed_block(1, text.encode()) + parser.finish())
    return [r.kind for r in records if type(r) is Failure]


def test_what_torchrun_and_a_cpp_abort_repeat_is_not_a_second_failure():
    """torchrun stops the other ranks with SIGTERM after one failed and lists them (-15): not failures of their own;
    a C++ abort's indented `what():` repeats its exception; one rank's signal is named once, not per mention."""
    block = "".join(f"[{r}]:\n  rank      : {r} (local_rank: {r})\n  exitcode  : -15 (pid: {170 + r})\n"
                    f"  traceback : Signal 15 (SIGTERM) received by PID {170 + r}\n" for r in (0, 1, 2))
    log = ("[rank3]: Traceback (most recent call last):\n[rank3]:   File \"launcher.py\", line 23, in <module>\n"
           "[rank3]: torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 3 has a total\n"
           "torch.distributed.elastic.multiprocessing.errors.ChildFailedError: \n"
           "============================================================\nFailures:\n" + block +
           "Root Cause (first observed failure):\n[0]:\n  exitcode  : 1 (pid: 1738)\n")
    assert _kinds(log) == ["oom", "traceback"]
    abort = ("terminate called after throwing an instance of 'c10::DistBackendError'\n"
             "  what():  [PG 0 Rank 1] Process group watchdog thread terminated with exception: [Rank 1] Watchdog "
             "caught collective operation timeout\n"
             "E0201 api.py:833] failed (exitcode: -6) local_rank: 1 (pid: 1734130) of binary: /usr/bin/python\n"
             "Root Cause (first observed failure):\n[0]:\n  exitcode  : -6 (pid: 1734130)\n")
    assert _kinds(abort) == ["nccl", "signal"]
    assert _kinds("Warning: NCCL timeout is set to 1800 seconds\n") == []  # a setting, not a timeout


def test_a_dict_after_a_lagging_frame_keeps_no_step_and_a_journald_prefix_is_not_a_description():
    """tqdm redraws at most ten times a second: a log cut after the dict of step 10, whose last frame says 7,
    gives that dict no step (its epoch says 10); `python3[1234]:` before a frame is a prefix, not a bar's name."""
    frame = " {0}%|█ | {0}/100 [00:01<00:10, 19.5it/s]".format
    lagging = (f"Total optimization steps = 100\n{frame(2)}{frame(4)}{frame(5)}\n"
               "{'loss': 2.0, 'grad_norm': 1.0, 'learning_rate': 1e-05, 'epoch': 0.05}\n"
               f"{frame(5)}{frame(7)}\n{{'loss': 1.9, 'grad_norm': 1.0, 'learning_rate': 1e-05, 'epoch': 0.1}}\n")
    parser = parse.LogParser()
    points = [p for p in flat(parser.feed_block(1, lagging.encode()) + parser.finish())
              if type(p) is Point]
    assert [(p.step, p.loss) for p in points] == [(5, 2.0), (None, 1.9)]
    journal = "".join(f"May 01 10:00:00 node1 python3[1234]: {line}\n" for line in (
        "Total optimization steps = 100", " 10%|█ | 10/100 [01:00<09:00,  6.00s/it]",
        "{'loss': 1.5, 'grad_norm': 0.5, 'learning_rate': 1e-05, 'epoch': 0.1}",
        " 10%|█ | 10/100 [01:00<09:00,  6.00s/it]"))
    parser = parse.LogParser()
    records = flat(parser.feed_block(1, journal.encode()) + parser.finish())
    assert [(p.step, p.loss) for p in records if type(p) is Point] == [(10, 1.5)]


def test_jsonl_rows_without_steps_are_numbered_only_when_the_file_is_read_alone():
    """2023's LogCallback wrote no current_steps: `lftop scan` of the file alone numbers its rows; beside a
    training.log, whose frames give the steps, they are left out (they would replace the log's real steps)."""
    row = '{"loss": 0.5, "eval_loss": null, "reward": -0.1, "learning_rate": 1e-05}'
    assert jsonl.parse_line(3, row) == []
    [point] = jsonl.parse_line(3, row, alone=True)
    assert (point.step, point.loss, point.metrics) == (3, 0.5, {"reward": -0.1})
