"""Who runs a trial, whether it is still alive, and a heartbeat that works on every storage.

Optuna's own heartbeat exists only for RDB storages (not journal files) and only inside
``Study.optimize``; this one is a trial system attribute (``dpc:heartbeat``, unix time)
rewritten every ``interval`` seconds by a thread while the objective runs, plus the owner
(``dpc:owner``: host id, pid, process start time). A RUNNING trial is stale when

- its owner ran on this machine and that process is gone (detected at once, e.g. after
  SIGKILL; the start time guards against a recycled pid), or
- its last heartbeat is older than ``grace`` seconds (any machine; clocks of the machines
  must agree to well within ``grace``, as NTP gives).
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from functools import lru_cache
from pathlib import Path
from typing import Any

from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial

log = logging.getLogger(__name__)

OWNER_KEY = "dpc:owner"
BEAT_KEY = "dpc:heartbeat"


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


@lru_cache(maxsize=None)
def host_id() -> str:
    """Hostname, boot id and pid namespace: equal iff two processes share a pid space."""
    ns = ""
    try:
        ns = os.readlink("/proc/self/ns/pid")
    except OSError:
        pass
    return f"{socket.gethostname()}|{_read('/proc/sys/kernel/random/boot_id')}|{ns}"


def process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), None if unknown."""
    stat = _read(f"/proc/{pid}/stat")
    if not stat:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


def pid_alive(pid: int, start: str | None = None) -> bool:
    stat = _read(f"/proc/{pid}/stat")
    if stat:
        fields = stat.rsplit(")", 1)[-1].split()
        if fields and fields[0] in ("Z", "X"):  # zombie: killed, not yet reaped
            return False
        return start is None or len(fields) <= 19 or fields[19] == start
    if Path("/proc/self/stat").exists():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_LIVE_TOKENS: set[str] = set()  # owner tokens of the trials this process is running now


def owner_record() -> dict[str, Any]:
    """Who runs a trial; its token stays live until ``release`` (so a trial left RUNNING by an
    earlier search in this same process, e.g. a notebook cell that raised, is found at once)."""
    pid = os.getpid()
    token = uuid.uuid4().hex
    _LIVE_TOKENS.add(token)
    return {"host": host_id(), "hostname": socket.gethostname(), "pid": pid, "start": process_start(pid), "token": token}


def release(owner: dict[str, Any] | None) -> None:
    if owner:
        _LIVE_TOKENS.discard(owner.get("token"))


def stale_reason(trial: FrozenTrial, grace: float, now: float | None = None) -> str | None:
    """Why a RUNNING trial is considered abandoned, or None if it may still be running."""
    now = time.time() if now is None else now
    owner = trial.system_attrs.get(OWNER_KEY) or {}
    pid = owner.get("pid")
    if owner.get("host") == host_id() and pid is not None and pid != os.getpid():
        if not pid_alive(int(pid), owner.get("start")):
            return f"worker process {pid} on this machine died while running the trial"
    if owner.get("host") == host_id() and pid == os.getpid() and owner.get("token") and owner["token"] not in _LIVE_TOKENS:
        return "an earlier search in this process stopped while running the trial"
    beat = trial.system_attrs.get(BEAT_KEY)
    if beat is None and trial.datetime_start is not None:
        beat = trial.datetime_start.timestamp()  # naive local time, as Optuna stores it
    if beat is not None and now - float(beat) > grace:
        who = f"worker {pid} on {owner.get('hostname', '?')}" if pid is not None else "its worker"
        return f"no heartbeat from {who} for {now - float(beat):.0f} s (grace {grace:g} s)"
    return None


def claim(storage: BaseStorage, trial_id: int, owner: dict[str, Any] | None = None) -> dict[str, Any]:
    """Mark a just-started trial as ours, with a first heartbeat; returns the owner record."""
    owner = owner or owner_record()
    storage.set_trial_system_attr(trial_id, OWNER_KEY, owner)
    storage.set_trial_system_attr(trial_id, BEAT_KEY, time.time())
    return owner


class Heartbeat:
    """``with Heartbeat(storage, trial_id, interval):`` beats until the block ends."""

    def __init__(self, storage: BaseStorage, trial_id: int, interval: float) -> None:
        self.storage, self.trial_id, self.interval = storage, trial_id, float(interval)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{trial_id}", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.storage.set_trial_system_attr(self.trial_id, BEAT_KEY, time.time())
            except UpdateFinishedTrialError:
                return  # failed as stale by another worker: nothing left to keep alive
            except Exception as e:  # a storage hiccup must not kill the evaluation
                log.warning("heartbeat of trial id %s failed: %s", self.trial_id, e)

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
