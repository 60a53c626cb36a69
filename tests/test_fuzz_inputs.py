"""Garbage in, one documented error out: a property-based fuzz of every input surface, plus
regression tests for each failure the reliability issue listed.

Surfaces: ``Genome.parse``, ``Genome.from_json``, ``python -m dpc`` (``dpc.__main__.main``
called in-process) and the flags of ``python -m strategies.run`` (``parse_args``: parsing and
every check, without a search). The only allowed outcomes are a result, a ``GenomeError``, or
status 2 with exactly one error line on stderr. Each input runs under a hard timeout (SIGALRM)
and Hypothesis' deadline, so a hang fails the test instead of stalling it. Derandomized: the
same inputs on every run. Over 10,000 inputs in total, well under a minute on 2 CPU cores.
"""
from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dpc.__main__ import main as dpc_main
from dpc.genome import MAX_BRANCHES, Genome, GenomeError
from dpc.ops import OP_NAMES
from strategies.objectives import ObjectiveError, resolve_objective
from strategies.run import build_parser, parse_args
from strategies.run import main as run_main
from strategies.synthetic import FailingObjective, SlowObjective, StructuredObjective, make_synthetic

ROOT = Path(__file__).resolve().parents[1]
HARD_TIMEOUT_S = 10  # per input; every input takes milliseconds
BATCH = 5  # inputs per Hypothesis example: generating them together costs ~2.5x less per input
INPUTS = {"parse": 3000, "from_json": 3000, "dpc_main": 2000, "run_flags": 2500}  # 10,500 in all
COUNTS: dict[str, int] = {}


def fuzz(surface: str, strategy):
    """Run the test on INPUTS[surface] inputs, BATCH per example; deadline 10 s per example."""
    return lambda test: settings(
        max_examples=INPUTS[surface] // BATCH, deadline=timedelta(seconds=10), derandomize=True, database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )(given(st.lists(strategy, min_size=BATCH, max_size=BATCH))(test))


class Hang(Exception):
    pass


@contextlib.contextmanager
def hard_timeout(seconds: int = HARD_TIMEOUT_S):
    """Raise Hang in the main thread if the body runs longer than ``seconds``."""
    if not hasattr(signal, "SIGALRM"):
        yield
        return

    def on_alarm(signum, frame):
        raise Hang(f"input still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def count(surface: str) -> None:
    COUNTS[surface] = COUNTS.get(surface, 0) + 1


# -- strategies for garbage ------------------------------------------------------------------------
EDGE_NUMBERS = ["0", "1", "-1", "--1", "+3", "2.9", "1e3", "1e300", "-1e300", "nan", "NaN", "inf", "-inf", "True",
                "False", "²", "١٢", "٣", "1_0", " 7 ", "", "0x10", "5", "999", "1000", "1001", "100000", "100001",
                "3600", "3601", "604800", "604801", "18446744073709551615", "18446744073709551616",
                "9" * 40, "9" * 5000, "-" + "9" * 5000, "1e99999", "0.0", "-0", "1e-300", "\x00", "4\n2"]
numbers = st.one_of(st.sampled_from(EDGE_NUMBERS), st.integers(-3, 12).map(str), st.integers().map(str),
                    st.floats().map(str), st.text(max_size=6))
op_names = st.one_of(st.sampled_from(OP_NAMES), st.sampled_from(["conv3x3", "sep3x3_2x2", "pool_3x3", "sep3x3_",
                                                                  "sep3x3_6x6x6", "pool_1x", "sep3x3_٣x٣", "CONV1X1"]),
                     st.builds(lambda k, a, b: f"{k}_{a}x{b}", st.sampled_from(["sep3x3", "pool"]), numbers, numbers),
                     st.text(max_size=12))
# lengths: mostly small, plus the edges of the branch limit (long inputs are slow to generate)
sizes = st.one_of(st.integers(1, 12), st.integers(1, 30),
                  st.sampled_from([MAX_BRANCHES - 1, MAX_BRANCHES, MAX_BRANCHES + 1, 3 * MAX_BRANCHES]))
depths = st.one_of(st.integers(1, 50), st.sampled_from([900, 1000, 1100, 5000, 100_000]))
inputs = st.one_of(st.sampled_from(["F", "f", "-1", "0", "1", "2", "--1", "²", "١", "+1", "-0", "", "F1", "9" * 5000]),
                   st.integers(-5, 10).map(str), st.integers().map(str), st.text(max_size=4))
tokens = st.one_of(st.builds(lambda i, o: f"{i}:{o}", inputs, op_names), st.text(max_size=10))
genome_text = st.one_of(
    st.lists(tokens, max_size=8).map(" ".join),
    st.lists(tokens, max_size=8).map(",".join),
    st.text(max_size=80),
    st.builds(lambda n: " ".join(["F:conv1x1"] + [f"{b}:sep3x3_6x6" for b in range(n - 1)]), sizes),
    st.builds(lambda n, t: " ".join([t] * n), sizes, tokens),
)

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=12),
                      st.sampled_from([-1, 0, 1, 3, 6, 21, 2, 10**30, "conv", "pyramid_pooling", [1, 6], [2, 2]]))
json_any = st.recursive(json_leaf, lambda kids: st.one_of(st.lists(kids, max_size=4),
                                                          st.dictionaries(st.text(max_size=8), kids, max_size=4)),
                        max_leaves=6)
json_branch = st.fixed_dictionaries(
    {}, optional={"op": st.one_of(st.sampled_from(["conv", "pyramid_pooling"]), json_leaf),
                  "kernel": st.one_of(st.sampled_from([1, 3, [3, 3], [1, 1], [3, 1]]), json_leaf),
                  "rate": st.one_of(st.lists(st.sampled_from([1, 3, 6, 9, 12, 15, 18, 21]), min_size=2, max_size=2),
                                    json_leaf, json_any),
                  "grid_size": st.one_of(st.lists(st.sampled_from([1, 2, 4, 8]), min_size=2, max_size=2), json_leaf),
                  "input": st.one_of(st.integers(-3, 6), json_leaf)})
json_text = st.one_of(
    st.lists(json_branch, max_size=6).map(json.dumps),
    json_any.map(json.dumps),
    st.text(max_size=60),
    st.builds(lambda n, c: c[0] * n + c[1] * n, depths, st.sampled_from(["[]", "{}", '["]'])),
    st.builds(lambda n: "[" * n, depths),
    st.builds(lambda d: '[{"input": ' + "1" * d + ', "op": "conv", "kernel": 1}]',
              st.one_of(st.integers(1, 30), st.sampled_from([4300, 4301, 6000]))),
    st.builds(lambda n: json.dumps([{"input": -1 if b == 0 else b - 1, "op": "conv", "kernel": 1} for b in range(n)]), sizes),
    st.binary(max_size=40),
)


def one_error_line(err: str, prog: str) -> bool:
    lines = err.strip().splitlines()
    return len(lines) == 1 and lines[0].startswith(f"{prog}") and ": error: " in lines[0]


# -- the fuzz ----------------------------------------------------------------------------------------
def check_parse(text) -> None:
    with hard_timeout():
        try:
            g = Genome.parse(text)
        except GenomeError as e:
            assert "\n" not in str(e) and len(str(e)) < 400
            return
        if len(g) <= 50:  # the longest chain has its own test below
            assert Genome.parse(str(g)) == g and len(g.canonical_hash()) == 16
            assert g.canonical().canonical_string() == g.canonical_string()


@fuzz("parse", genome_text)
def test_fuzz_genome_parse(texts):
    for text in texts:
        count("parse")
        check_parse(text)


def check_from_json(text) -> None:
    with hard_timeout():
        try:
            g = Genome.from_json(text)
        except GenomeError as e:
            assert "\n" not in str(e) and len(str(e)) < 400
            return
        if len(g) <= 50:
            assert Genome.from_json(g.to_json()) == g and len(g.canonical_hash()) == 16


@fuzz("from_json", json_text)
def test_fuzz_genome_from_json(texts):
    for text in texts:
        count("from_json")
        check_from_json(text)


DPC_FLAGS = {"describe": ["--size", "--in-channels", "--channels", "--concat-channels"],
             "sample": ["-n", "--seed", "--branches", "--format"], "space": ["--branches"]}
CELLS = st.one_of(genome_text, json_text.filter(lambda t: isinstance(t, str)),
                  st.sampled_from(["aspp", "top1", "weak", "nope", "x.json", "/etc/passwd", "/dev/zero", "/nonexistent/a.json"]))


def _dpc_command(cmd: str):
    return st.builds(
        lambda cell, pairs, extra: [cmd] + ([cell] if cmd == "describe" else []) + [x for p in pairs for x in p] + extra,
        CELLS,
        st.lists(st.tuples(st.sampled_from(DPC_FLAGS[cmd] + ["--bogus"]), numbers), max_size=4),
        st.lists(st.one_of(numbers, st.sampled_from(["json", "vector", "string", "--", "-", "--size"])), max_size=2),
    )


dpc_argv = st.one_of(st.sampled_from(list(DPC_FLAGS)).flatmap(_dpc_command), st.lists(st.text(max_size=10), max_size=5))


@fuzz("dpc_main", dpc_argv)
def test_fuzz_dpc_main(argvs):
    for argv in argvs:
        count("dpc_main")
        check_dpc_main(argv)


def check_dpc_main(argv) -> None:
    out, err = io.StringIO(), io.StringIO()
    with hard_timeout(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = dpc_main(argv)
        except SystemExit as e:
            rc = e.code
    if rc == 0:  # a result, or --help
        return
    assert rc == 2, (argv, rc, err.getvalue())
    assert one_error_line(err.getvalue(), "python -m dpc"), (argv, err.getvalue())


RUN_VALUE_FLAGS = ["--budget", "--seed", "--workers", "--branches", "--eval-seed", "--p-random", "--top-k", "--population",
                   "--tournament", "--tpe-startup", "--heartbeat", "--grace", "--max-retry", "--max-consecutive-failures",
                   "--worker-index", "--threads", "--poll"]
NAMES = ["ok", "exp-1", "a.b_c", "../../x", "..", ".", "a/b", "a\\b", "x\x00y", "x\ny", "-x", "é", "a" * 128, "a" * 129, ""]
OBJECTIVES = ["synthetic", "synthetic:slow,sleep=-1", "synthetic:failing,fail_rate=2", "synthetic:structured,noise=inf",
              "synthetic:structured,seed=2.9", "synthetic:structured,seed=True", "synthetic:structured,branches=9",
              "synthetic:slow,sleep=0.2,seed=1", "synthetic:failing,nan_rate=0.5", "synthetic:needle", "synthetic:,",
              "synthetic:structured,seed=1,seed=2", "synthetic:slow,sleep=nan", "synthetic:slow,sleep=1e400", "proxy",
              "full", "whatever"]
run_argv = st.builds(
    lambda strategy, pairs, names, objective, out_dir, extra: (
        (["--strategy", strategy] if strategy else []) + [x for p in pairs for x in p] + names + objective + out_dir + extra),
    st.one_of(st.sampled_from(["random", "local", "evolution", "tpe"]), st.sampled_from(["", "annealing"]), st.text(max_size=5)),
    st.lists(st.tuples(st.sampled_from(RUN_VALUE_FLAGS), numbers), max_size=5),
    st.lists(st.tuples(st.sampled_from(["--experiment", "--study"]), st.one_of(st.sampled_from(NAMES), st.text(max_size=12))),
             max_size=2).map(lambda ps: [x for p in ps for x in p]),
    st.one_of(st.just([]), st.tuples(st.just("--objective"), st.one_of(
        st.sampled_from(OBJECTIVES),
        st.builds(lambda k, v: f"synthetic:slow,{k}={v}", st.sampled_from(["seed", "noise", "branches", "sleep", "x"]), numbers),
        st.builds(lambda k, v: f"synthetic:failing,{k}={v}", st.sampled_from(["fail_rate", "nan_rate"]), numbers),
        st.text(max_size=12))).map(list)),
    st.one_of(st.just([]), st.tuples(st.just("--out-dir"), st.sampled_from(
        ["runs-not-created", "/etc/passwd", "/etc/passwd/x", "/proc/1/x", "", "x\x00y", "\ud800", "a" * 5000, "/tmp"])).map(list)),
    st.lists(st.one_of(st.sampled_from(["-q", "--dedupe", "--bogus", "--", "-", "--budget", "--config", "test"]),
                       st.text(max_size=8)), max_size=2),
)


@fuzz("run_flags", run_argv)
def test_fuzz_strategies_run_flags(argvs):
    for argv in argvs:
        count("run_flags")
        check_run_flags(argv)


RUN_PARSER = build_parser()  # argparse parsers can be reused; building one costs more than parsing


def check_run_flags(argv) -> None:
    out, err = io.StringIO(), io.StringIO()
    with hard_timeout(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            parse_args(argv, RUN_PARSER)
            return  # every check passed: the search would start
        except SystemExit as e:
            rc = e.code
    if rc == 0 and "usage:" in out.getvalue():  # --help
        return
    assert rc == 2, (argv, rc, err.getvalue())
    assert one_error_line(err.getvalue(), "python -m strategies.run"), (argv, err.getvalue())


def test_fuzz_total_at_least_10000():
    """Runs last (file order): the four surfaces together saw >= 10,000 inputs."""
    if set(COUNTS) != set(INPUTS):
        pytest.skip("only part of the fuzz ran")
    assert sum(COUNTS.values()) >= 10_000, COUNTS


# -- regressions: each example of the issue ----------------------------------------------------------
@pytest.mark.parametrize("text", ["--1:conv1x1", "²:conv1x1", "F:conv1x1 ١:conv1x1", "F:conv1x1 " + "9" * 5000 + ":conv1x1",
                                  "-" + "9" * 5000 + ":conv1x1", "F:sep3x3_" + "1" * 5000 + "x1"])
def test_malformed_branch_numbers_are_genome_errors(text):
    with pytest.raises(GenomeError) as e:
        Genome.parse(text)
    assert "\n" not in str(e.value) and len(str(e.value)) < 300


@pytest.mark.parametrize("text", ["[" * 100_000, "[" * 5000 + "]" * 5000, '{"a":' * 50_000,
                                  '[{"input": -1, "op": ' + "[" * 5000 + "]" * 5000 + "}]",
                                  '[{"input": ' + "1" * 5000 + ', "op": "conv", "kernel": 1}]',
                                  '[{"input": -1, "op": "conv", "kernel": 3, "rate": [' + "6" * 4000 + ", 6]}]"])
def test_deeply_nested_or_huge_json_is_a_genome_error(text):
    with pytest.raises(GenomeError) as e:
        Genome.from_json(text)
    assert "\n" not in str(e.value) and len(str(e.value)) < 300


def test_longest_chain_hashes_without_recursion_and_one_more_branch_is_refused():
    chain = " ".join(["F:conv1x1"] + [f"{b}:sep3x3_6x6" for b in range(MAX_BRANCHES - 1)])
    g = Genome.parse(chain)
    start = time.perf_counter()
    assert len(g.canonical_hash()) == 16 and g.canonical() == g  # a chain is its own canonical form
    assert time.perf_counter() - start < 5
    star = Genome.parse(" ".join(["F:conv1x1"] * MAX_BRANCHES))
    assert star.canonical() == star and Genome.from_json(g.to_json()) == g
    for text in (chain + f" {MAX_BRANCHES - 1}:conv1x1", g.to_json()[:-1] + ', {"op": "conv", "kernel": 1, "input": 0}]'):
        with pytest.raises(GenomeError, match=f"at most {MAX_BRANCHES} branches"):
            (Genome.from_json if text.startswith("[") else Genome.parse)(text)


def test_dpc_space_with_huge_branches_answers_at_once():
    start = time.time()
    p = subprocess.run([sys.executable, "-m", "dpc", "space", "--branches", "100000000"], capture_output=True, text=True,
                       timeout=60, cwd=ROOT)
    assert p.returncode == 2 and p.stdout == "" and time.time() - start < 30
    assert p.stderr.count("\n") == 1 and f"1..{MAX_BRANCHES:,}" in p.stderr and "error:" in p.stderr
    assert dpc_main(["space", "--branches", str(MAX_BRANCHES)]) == 0  # the largest space prints, in scientific form


def test_dpc_cli_errors_are_one_line(capsys):
    assert dpc_main(["describe", "F:conv1x1 --1:conv1x1"]) == 2
    err = capsys.readouterr().err
    assert one_error_line(err, "python -m dpc") and "'--1'" in err
    for argv, limit in ((["sample", "-n", "100001"], "0..100,000"), (["sample", "--seed", "-1"], "0..2^64-1"),
                        (["describe", "aspp", "--size", "65", "1e9"], "1..100,000"),
                        (["sample", "-n", "1000", "--branches", "1000"], "100,000")):
        with pytest.raises(SystemExit) as e:
            dpc_main(argv)
        err = capsys.readouterr().err
        assert e.value.code == 2 and one_error_line(err, "python -m dpc") and limit in err, err
    assert dpc_main(["sample", "-n", "2", "--seed", "0"]) == 0  # valid input: unchanged
    assert len(capsys.readouterr().out.splitlines()) == 2


def _run_error(argv, capsys) -> str:
    with pytest.raises(SystemExit) as e:
        parse_args(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and one_error_line(err, "python -m strategies.run"), err
    return err


@pytest.mark.parametrize("flags, message", [
    (["--heartbeat", "1e300"], "<= 3600 s"), (["--heartbeat", "inf"], "<= 3600 s"), (["--heartbeat", "nan"], "<= 3600 s"),
    (["--grace", "1e300"], "<= 604800 s"), (["--poll", "0"], "> 0"), (["--heartbeat", "30", "--grace", "30"], "grace > heartbeat"),
    (["--experiment", "../../x"], "no path separators"), (["--study", "a/b"], "no path separators"),
    (["--experiment", ".."], "without '..'"), (["--study", "x\ny"], "got 'x\\ny'"),
    (["--branches", "100000000"], "1..1,000"), (["--budget", "2.9"], "1..1,000,000,000"), (["--budget", "True"], "limits"),
    (["--seed", "١٢"], "0..2^64-1"), (["--workers", "9" * 5000], "1..1,024"),
    (["--objective", "synthetic:slow,sleep=-1"], "sleep must be a number of seconds in [0, 3600]"),
    (["--objective", "synthetic:failing,fail_rate=2"], "fail_rate must be a fraction in [0, 1]"),
    (["--objective", "synthetic:structured,noise=inf"], "for noise"),
    (["--objective", "synthetic:structured,seed=2.9"], "expected an integer"),
    (["--objective", "synthetic:structured,branches=True"], "expected an integer"),
    (["--objective", "synthetic:structured,budget=3"], "bad option 'budget=3'"),
])
def test_run_flags_are_checked_with_their_limits(flags, message, tmp_path, capsys):
    err = _run_error(["--strategy", "random", *flags, "--out-dir", str(tmp_path / "runs")], capsys)
    assert message in err, err
    assert not (tmp_path / "runs").exists()


def test_out_dir_is_checked_before_the_search(tmp_path, capsys):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    for out in (a_file, a_file / "sub"):
        rc = None
        try:
            rc = run_main(["--strategy", "random", "--objective", "synthetic", "--budget", "3", "--out-dir", str(out), "-q",
                           "--storage", str(tmp_path / "s.journal")])
        except SystemExit as e:
            rc = e.code
        err = capsys.readouterr().err
        assert rc == 2 and one_error_line(err, "python -m strategies.run") and "--out-dir" in err, err
        assert not (tmp_path / "s.journal").exists()  # nothing ran
    assert parse_args(["--strategy", "random", "--out-dir", str(tmp_path / "new" / "deeper")]).out_dir  # creatable


def test_read_only_out_dir(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as root: permissions do not make a folder read-only")
        err = _run_error(["--strategy", "random", "--out-dir", str(ro / "runs")], capsys)
        assert "is not writable" in err
    finally:
        ro.chmod(0o755)


def test_objective_options_are_validated():
    for spec, message in (("slow,sleep=-1", "sleep"), ("failing,fail_rate=2", "fail_rate"), ("failing,nan_rate=-0.1", "nan_rate"),
                          ("structured,noise=inf", "noise"), ("structured,noise=nan", "noise"), ("structured,seed=2.9", "seed"),
                          ("structured,seed=True", "seed"), ("structured,branches=9", "1..8"), ("structured,x=1", "bad option"),
                          ("structured,seed=1,seed=2", "twice"), ("needle", "unknown synthetic objective")):
        with pytest.raises(ObjectiveError, match=message):
            make_synthetic(spec)
        with pytest.raises(ObjectiveError):
            resolve_objective(f"synthetic:{spec}")
    for make, message in ((lambda: StructuredObjective(seed=True), "seed"), (lambda: StructuredObjective(branches=2.9), "branches"),
                          (lambda: StructuredObjective(noise=float("inf")), "noise"), (lambda: SlowObjective(sleep=-1), "sleep"),
                          (lambda: SlowObjective(sleep=float("nan")), "sleep"), (lambda: FailingObjective(fail_rate=2), "fail_rate")):
        with pytest.raises(ObjectiveError, match=message):
            make()
    with pytest.raises(ObjectiveError, match="eval_seed"):
        resolve_objective("synthetic", eval_seed=-1)
    with pytest.raises(ObjectiveError, match="threads"):
        resolve_objective("synthetic", threads=True)
    ok = make_synthetic("slow,sleep=0.25,seed=3,noise=0.01")  # valid input: unchanged
    assert (ok.sleep, ok.seed, ok.noise, ok.branches) == (0.25, 3, 0.01, 5)


def test_analysis_report_unwritable_out_is_one_line(tmp_path, capsys, monkeypatch):
    from analysis import report

    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(SystemExit) as e:  # the parent of --out is a regular file: checked before the storage is read
        report.main(["--storage", str(tmp_path / "none.journal"), "--out", str(a_file / "report")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.strip().splitlines()[-1].startswith("python -m analysis.report: error: --out")
    assert "Traceback" not in err

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(tmp_path / "out" / "report.md"))

    monkeypatch.setattr(report, "build", read_only)  # a read-only file system, whoever runs the test
    with pytest.raises(SystemExit) as e:
        report.main(["--storage", str(tmp_path / "none.journal"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("python -m analysis.report: error: cannot write the report")
    assert os.strerror(errno.EROFS) in err
