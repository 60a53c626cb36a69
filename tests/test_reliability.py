"""No instant at which a kill, a cut-off journal, a full or read-only disk loses a study.

Real processes where the point is about processes: a worker SIGKILLed right after each of
its journal records (``DPC_NAS_KILL_AFTER_LINES``), then the same command re-run.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.storages.journal import JournalStorage
from optuna.trial import TrialState

from strategies import search
from strategies.journal import SafeJournalBackend, StorageError, bad_tails, good_prefix
from strategies.run import main
from strategies.storage import open_storage
from strategies.study import RETRIES_KEY, pending_reruns, requeue
from strategies.synthetic import StructuredObjective

optuna.logging.set_verbosity(optuna.logging.WARNING)
ROOT = Path(__file__).resolve().parents[1]
BUDGET = 3
ARGS = ["--strategy", "evolution", "--population", "3", "--tournament", "2", "--budget", str(BUDGET), "--seed", "5",
        "--objective", "synthetic", "--study", "r", "-q"]


def env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), **extra}


def load(journal: Path, name: str = "r") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=JournalStorage(SafeJournalBackend(journal)))


@pytest.fixture(scope="module")
def reference() -> tuple[list[str], int, int]:
    """The uninterrupted run: its cells, and how many journal lines creation and trial 0 take."""
    ref = search(StructuredObjective(), "evolution", BUDGET, 5, strategy_params={"population": 3, "tournament": 2})
    cells = [t.user_attrs["genome"] for t in ref.study.trials]
    return cells, 12, 17  # (study: create + 11 attributes, pruner ones included; trial 0: start, 10 params, 5 attributes, tell)


def test_the_reference_line_counts_match_a_real_journal(tmp_path, reference):
    journal = tmp_path / "c.journal"
    assert main([*ARGS, "--storage", str(journal), "--out-dir", str(tmp_path)]) == 0
    records = [json.loads(line) for line in journal.read_text().splitlines()]
    _, creation, trial = reference
    assert [r["op_code"] for r in records[:creation]] == [0] + [2] * (creation - 1)
    assert records[creation]["op_code"] == 4 and records[creation]["system_attrs"]["dpc:owner"]["pid"] == os.getpid()
    assert records[creation + trial - 1]["op_code"] == 6  # trial 0 told
    assert records[creation + trial]["op_code"] == 4  # trial 1 starts


def test_sigkill_after_every_journal_line_of_creation_and_of_a_trial_then_rerun_reaches_the_budget(tmp_path, reference):
    """The kill lands after line k; the re-run (same command) ends with exactly the budget used,
    the same cells as an uninterrupted run, and no wait for a lock or a heartbeat grace."""
    cells, creation, trial = reference
    for k in range(1, creation + trial + 1):
        d = tmp_path / f"k{k}"
        d.mkdir()
        journal = d / "k.journal"
        argv = [*ARGS, "--storage", str(journal), "--out-dir", str(d)]
        killed = subprocess.run([sys.executable, "-m", "strategies.run", *argv], cwd=d, capture_output=True,
                                env=env(DPC_NAS_KILL_AFTER_LINES=str(k)), timeout=120)
        assert killed.returncode == -signal.SIGKILL, (k, killed.stderr)
        assert len(journal.read_bytes().splitlines()) == k
        start = time.monotonic()
        assert main(argv) == 0, k
        assert time.monotonic() - start < 20, f"re-run after a kill at line {k} stalled"  # grace is 60 s, Optuna's lock 30 s
        trials = load(journal).trials
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        assert [t.user_attrs["genome"] for t in complete] == cells, k
        failed = [t for t in trials if t.state == TrialState.FAIL]
        assert all(t.user_attrs["failure_kind"] == "stale" for t in failed), k
        assert all("died while running the trial" in t.user_attrs["failure_reason"] for t in failed), k
        assert len(failed) == (1 if creation < k < creation + trial else 0), k  # killed mid-trial: one stale trial, re-run


def test_a_journal_cut_at_every_byte_of_its_last_record_keeps_every_complete_record(tmp_path):
    journal = tmp_path / "full.journal"
    argv = [*ARGS, "--storage", str(journal), "--out-dir", str(tmp_path)]
    assert main(argv) == 0
    data = journal.read_bytes()
    last = data.rstrip(b"\n").rfind(b"\n") + 1  # where the last record (trial 2 told) starts
    for cut in range(last, len(data)):
        j = tmp_path / f"cut{cut}.journal"
        j.write_bytes(data[:cut])
        study = load(j)
        trials = study.trials
        assert [t.state for t in trials[:2]] == [TrialState.COMPLETE] * 2  # nothing complete lost
        tails = bad_tails(j)
        if cut == len(data) - 1:  # only the line end missing: the record is whole, and kept
            assert trials[2].state == TrialState.COMPLETE and not tails
        elif cut == last:  # cut exactly at a record boundary: nothing bad
            assert trials[2].state == TrialState.RUNNING and not tails
        else:
            assert trials[2].state == TrialState.RUNNING and len(tails) == 1
            assert tails[0].read_bytes() == data[last:cut]  # the bad tail is moved aside, byte for byte
        assert j.read_bytes().endswith(b"\n")  # never an append after a partial line
        assert good_prefix(j.read_bytes())[2] is None
    # ... and the run continues: the re-run finishes the cut trial's cell and reaches the budget.
    for cut in (last + 1, (last + len(data)) // 2, len(data) - 2):
        j = tmp_path / f"cut{cut}.journal"
        assert main([*ARGS, "--storage", str(j), "--out-dir", str(tmp_path)]) == 0
        assert j.with_name(j.name) and len(load(j).get_trials(states=(TrialState.COMPLETE,))) == BUDGET


def test_unknown_op_code_and_garbage_tails_are_moved_aside_and_a_bad_middle_is_refused(tmp_path, caplog):
    journal = tmp_path / "o.journal"
    argv = [*ARGS, "--storage", str(journal), "--out-dir", str(tmp_path)]
    assert main(argv) == 0
    good = journal.read_bytes()
    for tail in (b'{"op_code":99,"worker_id":"x"}\n', b'{"op_code":4,"worker_id":"x"}\n', b"[1,2]\n",
                 b'{"op_code": 8, "worker_id": "x", "trial_id": 0}\n', b"\x00\xff garbage\n", b"{" * 100_000 + b"\n"):
        journal.write_bytes(good + tail)
        with caplog.at_level("WARNING"):
            assert main(argv) == 0  # the study (budget already used) opens and reports
        assert journal.read_bytes() == good  # the bad tail gone, nothing else touched
        assert any("moved them to" in r.getMessage() for r in caplog.records)
        caplog.clear()
    lines = good.splitlines(keepends=True)
    journal.write_bytes(b"".join(lines[:5]) + b'{"op_code":99,"worker_id":"x"}\n' + b"".join(lines[5:]))
    with pytest.raises(StorageError, match=r"bad record \(unknown op code 99\) at byte \d+ followed by \d+ good one"):
        open_storage(journal)
    # Readers still see every record before the bad one.
    reader = object.__new__(SafeJournalBackend)
    reader.path, reader._offsets, reader._warned_at = str(journal), {0: 0}, None
    assert len(list(reader.read_logs(0))) == 5


def test_a_failed_append_cuts_the_file_back_and_says_so_in_one_line(tmp_path, monkeypatch):
    """An injected ENOSPC mid-write (half the record written): the partial record is removed."""
    journal = tmp_path / "e.journal"
    assert main([*ARGS, "--storage", str(journal), "--out-dir", str(tmp_path)]) == 0
    before = journal.read_bytes()
    backend = SafeJournalBackend(journal)
    real_open = open

    class HalfWrite:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            self.f.write(data[: len(data) // 2])
            self.f.flush()
            raise OSError(errno.ENOSPC, "No space left on device")

    def fake_open(path, mode="r", *a, **k):
        f = real_open(path, mode, *a, **k)
        return HalfWrite(f) if str(path) == str(journal) and "a" in mode else f

    monkeypatch.setattr("builtins.open", fake_open)
    with pytest.raises(StorageError, match=r"^cannot write journal .*: no space left on device \(disk full\)$"):
        backend.append_logs([{"op_code": 2, "worker_id": "w", "study_id": 0, "user_attr": {"x": 1}}])
    monkeypatch.undo()
    assert journal.read_bytes() == before


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return False
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    return r.returncode == 0


@contextlib.contextmanager
def tmpfs(path: Path, size: str):
    if not _mount_tmpfs(path, size):
        pytest.skip("cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN); the injected-ENOSPC test covers the code")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def test_a_full_disk_is_one_line_and_loses_nothing_then_the_run_continues(tmp_path):
    with tmpfs(tmp_path / "small", "1m") as disk:
        journal = disk / "f.journal"
        filler = disk / "filler"
        filler.write_bytes(b"\0" * (1024 * 1024 - 48 * 1024))  # leaves room for a few trials (~11 kB each)
        argv = ["--strategy", "random", "--budget", "30", "--objective", "synthetic", "--study", "r", "-q",
                "--storage", str(journal), "--out-dir", str(tmp_path / "out")]
        run = subprocess.run([sys.executable, "-m", "strategies.run", *argv], cwd=tmp_path, env=env(),
                             capture_output=True, text=True, timeout=120)
        assert run.returncode != 0
        err = run.stderr.strip().splitlines()
        assert len(err) == 1 and "disk full" in err[0] and "Traceback" not in run.stderr, run.stderr
        assert "re-run the same command" in err[0]
        study = load(journal)
        done = [t for t in study.trials if t.state == TrialState.COMPLETE]
        assert 0 < len(done) < 30 and good_prefix(journal.read_bytes())[2] is None
        filler.unlink()
        assert main(argv) == 0
        final = load(journal)
        assert len(final.get_trials(states=(TrialState.COMPLETE,))) == 30
        for t in done:  # nothing completed was lost or changed
            assert final.trials[t.number].value == t.value


def test_a_read_only_disk_is_one_line(tmp_path, capsys):
    journal_dir = tmp_path / "ro"
    with tmpfs(journal_dir, "1m"):
        journal = journal_dir / "ro.journal"
        argv = [*ARGS, "--storage", str(journal), "--out-dir", str(tmp_path / "out")]
        assert main(argv) == 0
        subprocess.run(["mount", "-o", "remount,ro", str(journal_dir)], check=True)
        capsys.readouterr()
        more = [*argv, "--budget", "5"]  # a bigger budget: it must write
        assert main(more) != 0
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "read-only file system" in err[0], err
        # Reading a study on a read-only disk works.
        assert len(load(journal).trials) == BUDGET


def test_interruptions_never_count_as_failures(tmp_path):
    """Three Ctrl-Cs on one cell (max_retry 2) leave it pending, with its retry count unchanged."""
    handle = open_storage(tmp_path / "i.journal")
    study = optuna.create_study(storage=handle.storage, direction="maximize")
    from strategies.space import search_space
    from strategies.study import start_rerun

    trial = study.ask(search_space())
    for _ in range(3):
        frozen = study._storage.get_trial(trial._trial_id)
        requeue(study, frozen, "interrupted", "interrupted (test)", max_retry=2)
        pending = pending_reruns(study.get_trials(deepcopy=False))
        assert [t.number for t in pending] == [frozen.number]
        trial = start_rerun(study, pending[0], search_space())
        assert int(study._storage.get_trial(trial._trial_id).system_attrs[RETRIES_KEY]) == 0
    # A dead worker does count.
    for expected in (1, 2):
        requeue(study, study._storage.get_trial(trial._trial_id), "stale", "stale: test", max_retry=2)
        trial = start_rerun(study, pending_reruns(study.get_trials(deepcopy=False))[0], search_space())
        assert int(study._storage.get_trial(trial._trial_id).system_attrs[RETRIES_KEY]) == expected
    requeue(study, study._storage.get_trial(trial._trial_id), "stale", "stale: test", max_retry=2)
    assert study._storage.get_trial(trial._trial_id).user_attrs["failure_kind"] == "error"
    assert pending_reruns(study.get_trials(deepcopy=False)) == []


@pytest.mark.parametrize("spec", [":memory:", "sqlite:///:memory:", "sqlite://"])
def test_in_memory_storage_is_refused_for_several_workers(spec, capsys, tmp_path):
    rc = main(["--strategy", "random", "--objective", "synthetic", "--budget", "4", "--workers", "2",
               "--storage", spec, "--out-dir", str(tmp_path), "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "private to one process" in err[0], err


def test_a_trial_starts_with_its_owner_in_the_same_write(tmp_path):
    journal = tmp_path / "o.journal"
    assert main([*ARGS, "--storage", str(journal), "--out-dir", str(tmp_path)]) == 0
    creates = [json.loads(x) for x in journal.read_text().splitlines() if json.loads(x)["op_code"] == 4]
    assert len(creates) == BUDGET
    for r in creates:
        assert r["state"] == TrialState.RUNNING and {"dpc:owner", "dpc:heartbeat"} <= set(r["system_attrs"])


def test_a_journal_of_the_previous_version_opens_and_its_waiting_rerun_is_run(tmp_path):
    """Plain Optuna's file backend wrote the journals before; the old re-queue left WAITING trials."""
    from optuna.storages.journal import JournalFileBackend

    journal = tmp_path / "old.journal"
    old = JournalStorage(JournalFileBackend(str(journal)))
    assert main([*ARGS[:-1], "--storage", str(journal), "--out-dir", str(tmp_path), "-q"]) == 0
    study = optuna.load_study(study_name="r", storage=old)
    dead = study.trials[1]
    study.enqueue_trial(dead.params, user_attrs={"retry_of": dead.number})  # what the old requeue wrote
    (tmp_path / "old.journal.lock").symlink_to(journal)  # and Optuna's symlink lock, left by a kill
    argv = [*ARGS, "--budget", str(BUDGET + 2), "--storage", str(journal), "--out-dir", str(tmp_path)]  # last --budget wins
    start = time.monotonic()
    assert main(argv) == 0
    assert time.monotonic() - start < 20  # the stale symlink lock is not ours: no 30 s wait
    trials = load(journal).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * (BUDGET + 2)
    assert trials[BUDGET].params == dead.params and trials[BUDGET].user_attrs["retry_of"] == dead.number
