"""A journal file that no crash, kill or full disk can make unreadable.

Optuna's ``JournalFileBackend`` (one JSON record per line) has three failure modes:

- its lock is a symlink that outlives a killed writer, so the next writer stalls 30 s;
- a record cut off by a crash or a full disk stays, and the next append lands after the partial
  line: from then on every reader fails with ``JSONDecodeError``;
- a well-formed record with an unknown op code fails replay with ``AssertionError``.

This backend keeps the file format (plain Optuna and optuna-dashboard still read it) and:

- appends under ``fcntl.flock`` of ``<journal>.append-lock``, which the kernel releases when
  the holder dies, even by SIGKILL;
- before every append, under that lock, checks the records written since its last check; a bad
  *tail* (a partial last line, undecodable JSON, an unknown op code, a record missing its keys)
  is moved to ``<journal>.bad-tail-<time>-<pid>``, named in a warning, and the file is cut back
  to its last good record: nothing is ever appended after a partial line. A bad record followed
  by good ones is not a crash tail (appends are whole lines under the lock) and is refused with
  a one-line error rather than guessed at;
- an append that fails (disk full, read-only file system, I/O error) cuts the file back to
  where it was and raises ``StorageError`` (one line): every earlier record is intact;
- readers stop at the first bad record (with a warning), so a damaged file is still readable
  up to it, read-only files included.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

from optuna.storages.journal import BaseJournalBackend

log = logging.getLogger(__name__)

LOCK_SUFFIX = ".append-lock"
BAD_TAIL_SUFFIX = ".bad-tail"

# op code -> keys its record must carry (Optuna 5's JournalOperation); replay reads them blindly.
_REQUIRED: dict[int, tuple[str, ...]] = {
    0: ("study_name", "directions"),  # CREATE_STUDY
    1: ("study_id",),  # DELETE_STUDY
    2: ("study_id", "user_attr"),  # SET_STUDY_USER_ATTR
    3: ("study_id", "system_attr"),  # SET_STUDY_SYSTEM_ATTR
    4: ("study_id",),  # CREATE_TRIAL
    5: ("trial_id", "param_name", "param_value_internal", "distribution"),  # SET_TRIAL_PARAM
    6: ("trial_id", "state"),  # SET_TRIAL_STATE_VALUES
    7: ("trial_id", "step", "intermediate_value"),  # SET_TRIAL_INTERMEDIATE_VALUE
    8: ("trial_id", "user_attr"),  # SET_TRIAL_USER_ATTR
    9: ("trial_id", "system_attr"),  # SET_TRIAL_SYSTEM_ATTR
    10: ("study_id",),  # DISCARD_TRIALS
}


class StorageError(RuntimeError):
    """A storage that cannot be opened or written; the message is one line."""


def record_problem(line: bytes) -> str | None:
    """Why one journal line is not a record Optuna can replay, or None if it is."""
    if not line.endswith(b"\n"):
        return "cut off (no line end)"
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):
        return "not JSON"
    if not isinstance(record, dict):
        return "not a JSON object"
    op = record.get("op_code")
    if isinstance(op, bool) or not isinstance(op, int) or op not in _REQUIRED:
        return f"unknown op code {op!r}"
    if not isinstance(record.get("worker_id"), str):
        return "no worker_id"
    missing = [k for k in _REQUIRED[op] if k not in record]
    if missing:
        return f"op code {op} without {', '.join(missing)}"
    return None


def good_prefix(data: bytes) -> tuple[int, int, str | None]:
    """(bytes of the leading good records, their count, the first problem or None)."""
    end, count = 0, 0
    while end < len(data):
        nl = data.find(b"\n", end)
        line = data[end:] if nl < 0 else data[end : nl + 1]
        problem = record_problem(line)
        if problem is not None:
            return end, count, problem
        end += len(line)
        count += 1
    return end, count, None


def _describe_errno(e: OSError) -> str:
    if e.errno == errno.ENOSPC:
        return "no space left on device (disk full)"
    if e.errno == errno.EDQUOT:
        return "disk quota exceeded"
    if e.errno == errno.EROFS:
        return "read-only file system"
    if e.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    return e.strerror or type(e).__name__


def os_error_text(e: OSError) -> str:
    """A one-line reason for an OSError, naming full and read-only disks plainly."""
    return _describe_errno(e)


@contextlib.contextmanager
def file_lock(path: str) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` (created if needed); the kernel drops it if we die."""
    try:
        f = open(path, "a")
    except OSError as e:
        raise StorageError(f"cannot create lock file {path}: {_describe_errno(e)}") from None
    with f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


class SafeJournalBackend(BaseJournalBackend):
    """Optuna's journal file format with crash-safe appends (see the module docstring)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = str(path)
        self.lock_path = self.path + LOCK_SUFFIX
        self._checked = 0  # bytes of the file known to be good records
        self._offsets: dict[int, int] = {0: 0}  # record number -> byte offset (for readers)
        self._warned_at: int | None = None
        if not os.path.exists(self.path):
            try:
                open(self.path, "ab").close()
            except OSError as e:
                raise StorageError(f"cannot create journal file {self.path}: {_describe_errno(e)}") from None
        if os.access(self.path, os.W_OK) and os.access(os.path.dirname(os.path.abspath(self.path)), os.W_OK):
            try:
                with self._lock():
                    self._check_tail()
            except StorageError:
                raise
            except OSError as e:  # e.g. a read-only mount that os.access does not know about
                if e.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
                    raise StorageError(f"cannot open journal file {self.path}: {_describe_errno(e)}") from None
                log.debug("journal %s is read-only here: reading only", self.path)

    def _lock(self):
        return file_lock(self.lock_path)

    # -- the tail check (call under the lock) -------------------------------------------------
    def _check_tail(self) -> None:
        size = os.path.getsize(self.path)
        if size < self._checked:  # another process cut a bad tail: check everything again
            self._checked = 0
        if size == self._checked:
            return
        with open(self.path, "rb") as f:
            f.seek(self._checked)
            data = f.read(size - self._checked)
        good, _count, problem = good_prefix(data)
        if problem is None:
            self._checked = size
            return
        tail = data[good:]
        # A whole record that lacks only its line end (a cut just before "\n") is complete: keep it.
        if not tail.endswith(b"\n") and b"\n" not in tail and record_problem(tail + b"\n") is None:
            with open(self.path, "ab") as f:
                f.write(b"\n")
                f.flush()
                os.fsync(f.fileno())
            self._checked = size + 1
            return
        rest = tail.split(b"\n", 1)[1] if b"\n" in tail else b""
        later_good = good_prefix(rest)[1]
        if later_good:
            raise StorageError(
                f"journal {self.path} has a bad record ({problem}) at byte {self._checked + good} followed by "
                f"{later_good} good one(s): not a crash tail; move the file aside or remove that line by hand"
            )
        aside = f"{self.path}{BAD_TAIL_SUFFIX}-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        try:
            with open(aside, "wb") as f:  # no fsync: a crash here loses only a record that was never whole
                f.write(tail)
            os.truncate(self.path, self._checked + good)
        except OSError as e:
            raise StorageError(
                f"journal {self.path} ends in a bad record ({problem}) that cannot be moved aside: {_describe_errno(e)}"
            ) from None
        self._checked += good
        log.warning(
            "journal %s: its last %d bytes were not a complete record (%s; a crash or a full disk cut them off); "
            "moved them to %s and went on from the last complete record",
            self.path, len(tail), problem, aside,
        )

    # -- Optuna's backend interface -------------------------------------------------------------
    def read_logs(self, log_number_from: int) -> Iterator[dict[str, Any]]:
        with open(self.path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            known = (log_number_from if log_number_from in self._offsets  # the usual case: read on from the last read
                     else max(n for n in self._offsets if n <= log_number_from))
            number, offset = known, self._offsets[known]
            f.seek(offset)
            for line in f:
                if offset + len(line) > size or not line.endswith(b"\n"):
                    return  # being written right now, or cut off: the next read gets it
                problem = record_problem(line)
                if problem is not None:
                    if self._warned_at != offset:
                        self._warned_at = offset
                        log.warning("journal %s: record %d at byte %d is bad (%s); reading stops there",
                                    self.path, number, offset, problem)
                    return
                offset += len(line)
                number += 1
                self._offsets[number] = offset
                if number > log_number_from:
                    yield json.loads(line)

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        data = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in logs).encode("utf-8")
        with self._lock():
            try:
                self._check_tail()
            except OSError as e:
                raise StorageError(f"cannot write journal {self.path}: {_describe_errno(e)}") from None
            start = self._checked
            try:
                with open(self.path, "ab") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
            except OSError as e:
                with contextlib.suppress(OSError):
                    os.truncate(self.path, start)  # never leave a partial record behind
                raise StorageError(f"cannot write journal {self.path}: {_describe_errno(e)}") from None
            self._checked = start + len(data)
            _fault_point(self.path, len(logs))


# -- fault injection for the crash tests --------------------------------------------------------
_APPENDED = {"lines": 0}


def _fault_point(path: str, n: int) -> None:
    """``DPC_NAS_KILL_AFTER_LINES=k``: SIGKILL this process right after its k-th journal record.

    Lets the tests kill a real worker at every line of study creation and of a trial.
    """
    limit = os.environ.get("DPC_NAS_KILL_AFTER_LINES")
    if not limit:
        return
    _APPENDED["lines"] += n
    if _APPENDED["lines"] >= int(limit):
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


def bad_tails(path: str | os.PathLike) -> list[Path]:
    """The files bad tails of this journal were moved to."""
    p = Path(path)
    return sorted(p.parent.glob(p.name + BAD_TAIL_SUFFIX + "-*"))
