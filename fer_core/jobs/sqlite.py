"""The job store's SQLite file: its schema, connections (WAL, a busy timeout, read-only on a
read-only server) and the one transaction helper every write goes through."""

from __future__ import annotations

import random
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from fer_core.config import data_dir, read_only
from fer_core.errors import JobError

STORE_FILE = "jobs.sqlite3"
BUSY_TIMEOUT_S = 30  # how long a writer waits for another process before giving up

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    config TEXT NOT NULL,
    status TEXT NOT NULL,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    pid INTEGER,
    slot INTEGER,
    device TEXT,
    run_dir TEXT NOT NULL,
    epoch INTEGER NOT NULL DEFAULT 0,
    total_epochs INTEGER NOT NULL,
    step INTEGER NOT NULL DEFAULT 0,
    steps INTEGER NOT NULL DEFAULT 0,
    metrics TEXT,
    heartbeat REAL,
    error TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    resume INTEGER NOT NULL DEFAULT 0,
    attempt INTEGER NOT NULL DEFAULT 0,
    runner TEXT NOT NULL DEFAULT 'local',
    submission TEXT,
    sweep INTEGER,
    node_id TEXT,
    beat INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs (status, id);
CREATE TABLE IF NOT EXISTS sweeps (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    spec TEXT NOT NULL
);
"""
#: Columns added after the first release, with their definitions (added to older stores on open):
#: the lease number; where the job runs (``local`` or ``ray``) and the cluster's id for it (Ray's
#: submission id); the sweep it belongs to; the node it runs on (Ray's node id, or the host) and
#: the last beat counter seen in its worker's report.
ADDED_COLUMNS = {"attempt": "INTEGER NOT NULL DEFAULT 0", "runner": "TEXT NOT NULL DEFAULT 'local'",
                 "submission": "TEXT", "sweep": "INTEGER", "node_id": "TEXT", "beat": "INTEGER NOT NULL DEFAULT 0"}


def create_schema(conn: sqlite3.Connection) -> None:
    """The tables, and the columns an older store lacks (another process may add them at the same time)."""
    conn.executescript(SCHEMA)
    have = {r["name"] for r in conn.execute("PRAGMA table_info(jobs)")}
    for column, definition in ADDED_COLUMNS.items():
        if column not in have:
            try:
                conn.execute(f"ALTER TABLE jobs ADD COLUMN {column} {definition}")
            except sqlite3.OperationalError as exc:
                if "duplicate column" not in str(exc):  # another process added it just now
                    raise


def store_path() -> Path:
    return data_dir() / STORE_FILE


def connect(path: str | Path | None = None) -> sqlite3.Connection:
    """Open the job store (created if missing): WAL mode, a busy timeout, rows as dicts.

    Raises:
        JobError: the file or its folder cannot be opened or written.
    """
    path = Path(path) if path else store_path()
    if read_only():
        return _connect_read_only(path)
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        conn = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_S * 1000}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            create_schema(conn)
            return conn
        except (OSError, sqlite3.Error) as exc:
            if conn is not None:
                conn.close()
            # Switching a new file to WAL, and WAL recovery, can answer "locked" at once without
            # waiting on the busy handler when two processes open the store together: retry.
            if _is_busy(exc) and time.monotonic() < deadline:
                time.sleep(random.uniform(0.02, 0.2))
                continue
            if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError):
                raise JobError(f"Cannot open the job store {path}: {explain_sqlite(exc)}.") from None
            raise JobError(f"Cannot open the job store {path}: {exc}. Check that the folder exists, "
                           "is writable and the disk is not full.") from None


def _is_busy(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc))


@contextmanager
def transaction(conn: sqlite3.Connection, path: str | Path | None = None) -> Iterator[sqlite3.Connection]:
    """One write transaction, taken at once (BEGIN IMMEDIATE) so read-then-write is atomic.

    ``path`` (the store's file) goes into error messages.
    """
    where = f" {path}" if path else ""
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.Error as exc:
        raise JobError(f"The job store{where} is not writable: {explain_sqlite(exc)}.") from None
    try:
        yield conn
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        _rollback(conn)
        raise JobError(f"The job store{where} could not record the change: {explain_sqlite(exc)}.") from None
    except BaseException:
        _rollback(conn)
        raise


def _rollback(conn: sqlite3.Connection) -> None:
    """Roll back if a transaction is still open: SQLite ends some on its own (a full disk, I/O errors)."""
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # the connection is unusable; the caller's error already says why


def explain_sqlite(exc: BaseException) -> str:
    """What an SQLite error means for the user, with what to do next."""
    text = str(exc)
    if "full" in text.lower():
        return f"{text}: the disk is full; free some space, then try again"
    if "malformed" in text or "not a database" in text:
        return (f"{text}: the job store file is damaged; run 'python -m fer_core jobs repair' to rebuild it from "
                "the run directories (a backup of the damaged file is kept)")
    return f"{text}; check that data/ is writable and the disk is not full"


def _connect_read_only(path: Path) -> sqlite3.Connection:
    """A read-only server's view of the store, which creates no file, not even SQLite's side files
    (``-wal``, ``-shm``), and works on a read-only mount: while the full server has the store open
    (both side files exist) it is opened read-only and sees every committed change; otherwise
    everything is in the main file and it is opened ``immutable``. An empty table when the full
    server has not made the store yet."""
    if path.is_file():
        live = all(path.with_name(path.name + s).is_file() for s in ("-wal", "-shm"))
        last = None
        for mode in (("mode=ro", "immutable=1") if live else ("immutable=1",)):
            try:
                conn = sqlite3.connect(f"{path.resolve().as_uri()}?{mode}", uri=True, timeout=BUSY_TIMEOUT_S,
                                       isolation_level=None, check_same_thread=False)
                conn.row_factory = sqlite3.Row
                conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_S * 1000}")
                conn.execute("SELECT COUNT(*) FROM jobs").fetchone()
                return conn
            except sqlite3.Error as exc:
                last = exc  # a read-only mount refuses the shared memory file: read the main file as it is
        raise JobError(f"The job store {path} cannot be read: {explain_sqlite(last)}.") from None
    conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    create_schema(conn)
    return conn
