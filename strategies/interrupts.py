"""Deferring Ctrl-C / SIGTERM across storage writes that must not be cut in half.

An interrupt that lands inside ``study.ask`` or ``study.tell`` can leave a trial RUNNING
with no owner (so a resume waits a whole grace period for it) or leave Optuna's journal
lock file behind. Inside ``deferred_interrupts()`` SIGINT and SIGTERM are recorded and
re-raised (to their original handlers) when the block ends, so the loop can requeue the
trial cleanly. SIGKILL cannot be deferred; the heartbeat covers it.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    old = {sig: signal.signal(sig, lambda signum, frame: received.append(signum)) for sig in SIGNALS}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        for sig in dict.fromkeys(received):
            signal.raise_signal(sig)
