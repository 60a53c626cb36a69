"""Storage specs -> Optuna storage, plus the lock that keeps a study's budget exact.

A spec is ``None`` (in memory: one process, no resume), a URL with ``://`` (any Optuna RDB
URL: ``sqlite:///x.db``, ``postgresql://user:pw@host/db``, ``mysql://...``) or a path,
which is an Optuna journal file (Optuna's advice for parallel workers on one machine).

The budget lock serialises the few storage operations that decide whether a worker may
start another trial (count, ask, fail-and-requeue stale trials), so several workers never
start more trials than the budget allows. It is held for milliseconds per trial:

- journal file / SQLite: ``fcntl.flock`` on a sidecar file ``<path>.dpc-lock``
  (one machine; the kernel releases it when a process dies, even by SIGKILL); journal files
  are written through ``strategies.journal`` (crash-safe appends, a checked tail);
- PostgreSQL: a transaction-scoped advisory lock keyed by the study name, so workers on
  several machines share it (released when a worker's connection drops);
- in memory (also ``sqlite:///:memory:``, private to one process): a thread lock, and
  ``persistent`` is False, so several workers are refused; any other URL: a process-local lock, with a warning that
  concurrent workers may overshoot the budget by up to (workers - 1) trials.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ContextManager, Iterator

import optuna
from optuna.storages import BaseStorage

from .journal import SafeJournalBackend, StorageError, file_lock, os_error_text

__all__ = ["StorageError", "StorageHandle", "open_storage", "file_lock", "redact"]

log = logging.getLogger(__name__)


@dataclass
class StorageHandle:
    storage: BaseStorage
    spec: str | None  # what a child worker passes to reopen it (None: in memory)
    lock: Callable[[str], ContextManager]  # study name -> budget lock
    persistent: bool  # survives the process (resume, several workers)

    @property
    def display(self) -> str:
        return "in memory" if self.spec is None else redact(self.spec)


def redact(url: str) -> str:
    """``postgresql://user:secret@host/db`` -> ``postgresql://user:***@host/db``."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def advisory_key(study_name: str) -> int:
    """A signed 64-bit key for pg_advisory_xact_lock, stable across machines."""
    return int.from_bytes(hashlib.sha256(b"dpc-nas:" + study_name.encode()).digest()[:8], "big", signed=True)


def _pg_lock(engine) -> Callable[[str], ContextManager]:
    from sqlalchemy import text

    @contextlib.contextmanager
    def lock(study_name: str) -> Iterator[None]:
        with engine.connect() as conn, conn.begin():
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": advisory_key(study_name)})
            yield

    return lock


def thread_lock() -> Callable[[str], ContextManager]:
    locks: dict[str, threading.Lock] = {}
    guard = threading.Lock()

    def lock(study_name: str) -> ContextManager:
        with guard:
            return locks.setdefault(study_name, threading.Lock())

    return lock


def in_memory(spec: str | os.PathLike | None) -> bool:
    """Specs whose data lives in one process only (lost at exit, invisible to other workers)."""
    text = "" if spec is None else str(spec).strip()
    return text in ("", ":memory:") or bool(re.fullmatch(r"sqlite(\+\w+)?:///?(:memory:)?(\?.*)?", text, re.IGNORECASE))


def open_storage(spec: str | os.PathLike | None, must_exist: bool = False) -> StorageHandle:
    """Open (creating if needed) the storage a spec names; one-line ``StorageError`` if not.

    ``must_exist``: a missing journal file or SQLite database is an error rather than a new,
    empty storage (what readers such as ``analysis`` want).
    """
    if spec is None or str(spec) in ("", ":memory:"):
        return StorageHandle(optuna.storages.InMemoryStorage(), None, thread_lock(), persistent=False)
    text = str(spec)
    if must_exist and not in_memory(text):
        local = text[len("sqlite:///"):] if text.startswith("sqlite:///") else None if "://" in text else text
        if local is not None and not Path(local).expanduser().is_file():
            raise StorageError(f"storage {text!r} not found" if "://" in text else f"storage file {text!r} not found")
    if "://" in text:
        return _open_rdb(text)
    path = Path(text).expanduser()
    if path.is_dir():
        raise StorageError(f"cannot open journal file {text!r}: it is a directory")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        from optuna.storages.journal import JournalStorage

        storage = JournalStorage(SafeJournalBackend(path))
    except OSError as e:
        raise StorageError(f"cannot open journal file {text!r}: {os_error_text(e)}") from None
    except ValueError as e:
        raise StorageError(f"cannot open journal file {text!r}: {_first_line(e)}") from None
    lock_path = str(path) + ".dpc-lock"
    return StorageHandle(storage, str(path), lambda _name: file_lock(lock_path), persistent=True)


def _module_exists(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def sqlalchemy_url(url: str) -> str:
    """A plain ``postgresql://`` (or ``postgres://``) URL gets the installed driver.

    SQLAlchemy 2.1 maps ``postgresql://`` to psycopg 3; the project's extra installs
    psycopg2, so plain URLs use it when psycopg 3 is absent.
    """
    scheme, rest = url.split("://", 1)
    if scheme.lower() in ("postgresql", "postgres"):
        if _module_exists("psycopg"):
            return "postgresql+psycopg://" + rest
        if _module_exists("psycopg2"):
            return "postgresql+psycopg2://" + rest
        return "postgresql://" + rest
    return url


INIT_LOCK_KEY = advisory_key("storage-init")


@contextlib.contextmanager
def _init_lock(url: str) -> Iterator[None]:
    """Serialise table creation among workers that start together on a new database.

    Optuna's RDBStorage creates its tables on open; two processes doing it at once on an empty
    PostgreSQL database collide (``duplicate key value violates unique constraint
    "pg_type_typname_nsp_index"``). PostgreSQL: a session advisory lock; MySQL: GET_LOCK;
    SQLite: a file lock next to the database. Released when the connection closes, also on a kill.
    """
    scheme = url.split("://", 1)[0].lower()
    if scheme.startswith("sqlite"):
        db = url.split(":///", 1)[1].split("?", 1)[0] if ":///" in url else ""
        if not db or db == ":memory:":
            yield
            return
        with file_lock(db + ".dpc-init-lock"):
            yield
        return
    if not (scheme.startswith("postgres") or scheme.startswith("mysql")):
        yield
        return
    import sqlalchemy
    from sqlalchemy import text
    from sqlalchemy.pool import NullPool

    engine = sqlalchemy.create_engine(sqlalchemy_url(url), poolclass=NullPool)
    try:
        with engine.connect() as conn:
            if scheme.startswith("postgres"):
                conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": INIT_LOCK_KEY})
            else:
                conn.execute(text("SELECT GET_LOCK('dpc-nas-storage-init', 120)"))
            conn.commit()
            try:
                yield
            finally:
                with contextlib.suppress(Exception):
                    if scheme.startswith("postgres"):
                        conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": INIT_LOCK_KEY})
                    else:
                        conn.execute(text("SELECT RELEASE_LOCK('dpc-nas-storage-init')"))
                    conn.commit()
    finally:
        engine.dispose()


def _open_rdb(url: str) -> StorageHandle:
    scheme = url.split("://", 1)[0].lower()
    engine_kwargs = {} if scheme.startswith("sqlite") else {"pool_pre_ping": True}
    try:
        with _init_lock(url):
            storage = optuna.storages.RDBStorage(sqlalchemy_url(url), engine_kwargs=engine_kwargs)
    except StorageError:
        raise
    except ImportError:
        hint = " (pip install 'dpc-nas[postgres]', i.e. psycopg2-binary)" if scheme.startswith("postgres") else ""
        raise StorageError(f"cannot open storage {redact(url)}: no database driver for {scheme}{hint}") from None
    except Exception as e:  # sqlalchemy errors: bad URL, refused connection, auth
        raise StorageError(f"cannot open storage {redact(url)}: {_first_line(e)}") from None
    if in_memory(url):
        lock = thread_lock()
    elif scheme.startswith("postgres"):
        lock = _pg_lock(storage.engine)
    elif scheme.startswith("sqlite"):
        db = url.split(":///", 1)[1] if ":///" in url else ""
        lock_path = (db or "sqlite") + ".dpc-lock"
        lock = lambda _name: file_lock(lock_path)  # noqa: E731
    else:
        log.warning(
            "no cross-process budget lock for %s storage: concurrent workers may overshoot the "
            "budget by up to (workers - 1) trials; use PostgreSQL or a journal file for exact budgets",
            scheme,
        )
        lock = thread_lock()
    return StorageHandle(storage, url, lock, persistent=not in_memory(url))
