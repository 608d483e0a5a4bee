"""The node's SQLite database: parties, datasets and their policies, tasks, results, nonces, the audit log.

One file (``node.db``) in WAL mode, shared by every process that opens the
node. Each thread gets its own connection (``busy_timeout`` so that writers
wait for each other instead of failing; foreign keys on; ``synchronous=FULL``
so an accepted request survives a power loss, except in the transactions that
ask for less: the scheduler's claims and lease renewals, whose loss only runs a
task again). Writes go through
:meth:`Database.transaction`, which takes the write lock at ``BEGIN
IMMEDIATE`` so a read-then-write sequence cannot be interleaved with another
process's; a nested ``transaction()`` on the same thread is a savepoint.

The schema is versioned (table ``schema_version``) and brought up to date by
:func:`migrate`, the one migration function, under the write lock, so several
processes opening a new node at once create it once. The tables are described
in ``docs/node.md``.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from mesatee.core.binary import require_bytes
from mesatee.errors import InvalidArgumentError, NodeError, NotFoundError

__all__ = [
    "OPEN_TASK_STATUSES",
    "SCHEMA_VERSION",
    "TASK_STATUSES",
    "Database",
    "PartyRecord",
    "migrate",
]

SCHEMA_VERSION = 2
TASK_STATUSES = ("created", "ready", "running", "done", "failed", "cancelled")
#: A task in one of these states still needs its inputs: their datasets cannot be deleted.
OPEN_TASK_STATUSES = ("created", "ready", "running")

_STATUS_CHECK = ", ".join(f"'{s}'" for s in TASK_STATUSES)

# Each entry upgrades the schema from version i to i + 1. Never edit a released entry: append a new one.
_MIGRATIONS: tuple[str, ...] = (
    f"""
    CREATE TABLE parties (
        party_id     BLOB PRIMARY KEY CHECK (length(party_id) = 32),
        signing_key  BLOB NOT NULL CHECK (length(signing_key) = 32),
        hpke_key     BLOB NOT NULL CHECK (length(hpke_key) = 32),
        name         TEXT NOT NULL DEFAULT '',
        admitted_at  INTEGER NOT NULL,
        revoked_at   INTEGER
    ) STRICT;

    CREATE TABLE datasets (
        dataset_id   BLOB PRIMARY KEY CHECK (length(dataset_id) = 32),
        owner        BLOB NOT NULL REFERENCES parties (party_id),
        size         INTEGER NOT NULL CHECK (size >= 0),
        format       TEXT NOT NULL,
        uses         INTEGER NOT NULL DEFAULT 0 CHECK (uses >= 0),
        created_at   INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX datasets_by_owner ON datasets (owner);

    CREATE TABLE dataset_policies (
        dataset_id   BLOB PRIMARY KEY REFERENCES datasets (dataset_id) ON DELETE CASCADE,
        policy       BLOB NOT NULL,
        updated_at   INTEGER NOT NULL
    ) STRICT;

    CREATE TABLE functions (
        name         TEXT NOT NULL,
        version      INTEGER NOT NULL,
        owner        BLOB REFERENCES parties (party_id),
        declaration  BLOB NOT NULL,
        added_at     INTEGER NOT NULL
    ) STRICT;
    CREATE UNIQUE INDEX functions_unique ON functions (name, version, ifnull(owner, x''));

    CREATE TABLE tasks (
        task_id        BLOB PRIMARY KEY CHECK (length(task_id) = 16),
        manifest       BLOB NOT NULL,
        manifest_hash  BLOB NOT NULL UNIQUE CHECK (length(manifest_hash) = 32),
        creator        BLOB NOT NULL REFERENCES parties (party_id),
        status         TEXT NOT NULL CHECK (status IN ({_STATUS_CHECK})),
        created_at     INTEGER NOT NULL,
        updated_at     INTEGER NOT NULL,
        expires_at     INTEGER NOT NULL,
        error          TEXT
    ) STRICT;
    CREATE INDEX tasks_by_status ON tasks (status);

    CREATE TABLE task_participants (
        task_id      BLOB NOT NULL REFERENCES tasks (task_id) ON DELETE CASCADE,
        party_id     BLOB NOT NULL CHECK (length(party_id) = 32),
        PRIMARY KEY (task_id, party_id)
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX task_participants_by_party ON task_participants (party_id);

    CREATE TABLE task_inputs (
        task_id      BLOB NOT NULL REFERENCES tasks (task_id) ON DELETE CASCADE,
        slot         TEXT NOT NULL,
        dataset_id   BLOB NOT NULL CHECK (length(dataset_id) = 32),
        owner        BLOB NOT NULL CHECK (length(owner) = 32),
        assigned_at  INTEGER,
        PRIMARY KEY (task_id, slot)
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX task_inputs_by_dataset ON task_inputs (dataset_id);

    CREATE TABLE approvals (
        task_id      BLOB NOT NULL REFERENCES tasks (task_id) ON DELETE CASCADE,
        party_id     BLOB NOT NULL CHECK (length(party_id) = 32),
        signature    BLOB NOT NULL CHECK (length(signature) = 64),
        created_at   INTEGER NOT NULL,
        PRIMARY KEY (task_id, party_id)
    ) STRICT, WITHOUT ROWID;

    CREATE TABLE grants (
        task_id      BLOB NOT NULL REFERENCES tasks (task_id) ON DELETE CASCADE,
        slot         TEXT NOT NULL,
        party_id     BLOB NOT NULL CHECK (length(party_id) = 32),
        ciphertext   BLOB NOT NULL,
        created_at   INTEGER NOT NULL,
        PRIMARY KEY (task_id, slot)
    ) STRICT, WITHOUT ROWID;

    CREATE TABLE results (
        task_id       BLOB PRIMARY KEY REFERENCES tasks (task_id) ON DELETE CASCADE,
        receipt       BLOB NOT NULL,
        signature     BLOB NOT NULL CHECK (length(signature) = 64),
        return_value  BLOB NOT NULL,
        created_at    INTEGER NOT NULL
    ) STRICT;

    CREATE TABLE result_outputs (
        task_id      BLOB NOT NULL REFERENCES results (task_id) ON DELETE CASCADE,
        slot         TEXT NOT NULL,
        blob_id      TEXT NOT NULL CHECK (length(blob_id) = 64),
        keys         BLOB NOT NULL,
        deleted_at   INTEGER,
        PRIMARY KEY (task_id, slot)
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX result_outputs_by_blob ON result_outputs (blob_id);

    CREATE TABLE request_nonces (
        party_id     BLOB NOT NULL CHECK (length(party_id) = 32),
        nonce        BLOB NOT NULL,
        expires_at   INTEGER NOT NULL,
        PRIMARY KEY (party_id, nonce)
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX request_nonces_by_expiry ON request_nonces (expires_at);

    CREATE TABLE audit (
        seq          INTEGER PRIMARY KEY,
        time         INTEGER NOT NULL,
        party        TEXT NOT NULL,
        action       TEXT NOT NULL,
        target       TEXT NOT NULL,
        outcome      TEXT NOT NULL CHECK (outcome IN ('accepted', 'refused')),
        detail       TEXT NOT NULL,
        prev_hash    BLOB NOT NULL CHECK (length(prev_hash) = 32),
        hash         BLOB NOT NULL CHECK (length(hash) = 32)
    ) STRICT;
    CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, 'append-only'); END;
    CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit BEGIN SELECT RAISE(ABORT, 'append-only'); END;
    """,
    # 2: the scheduler's queue (see mesatee.node.scheduler). Times in these columns are Unix seconds as REAL.
    """
    ALTER TABLE tasks ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE tasks ADD COLUMN timeout REAL;
    ALTER TABLE tasks ADD COLUMN staged_at REAL;
    ALTER TABLE tasks ADD COLUMN not_before REAL NOT NULL DEFAULT 0;
    ALTER TABLE tasks ADD COLUMN started_at REAL;
    ALTER TABLE tasks ADD COLUMN ended_at REAL;
    ALTER TABLE tasks ADD COLUMN deadline REAL;
    ALTER TABLE tasks ADD COLUMN lease_owner TEXT;
    ALTER TABLE tasks ADD COLUMN lease_until REAL;
    CREATE INDEX tasks_queue ON tasks (status, staged_at);
    """,
)


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema up to :data:`SCHEMA_VERSION` (call inside a write transaction); return the old version.

    A database written by a newer mesatee (a version above ours) is refused, never downgraded.
    """
    conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL) STRICT")
    row = conn.execute("SELECT version FROM schema_version").fetchone()
    current = 0 if row is None else int(row[0])
    if current > SCHEMA_VERSION:
        raise NodeError(f"the node database has schema version {current}; this mesatee knows up to {SCHEMA_VERSION}")
    for version in range(current, SCHEMA_VERSION):
        for statement in _MIGRATIONS[version].split(";\n"):  # statements end a line; trigger bodies do not
            if statement.strip():
                conn.execute(statement)
    if row is None:
        conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
    elif current != SCHEMA_VERSION:
        conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))
    return current


@dataclass(frozen=True)
class PartyRecord:
    """A party as the operator admitted it."""

    party_id: bytes
    signing_key: bytes
    hpke_key: bytes
    name: str
    admitted_at: int
    revoked_at: int | None

    @property
    def admitted(self) -> bool:
        return self.revoked_at is None


class Database:
    """The node's database at ``path`` (created if missing): per-thread connections, write transactions."""

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 30.0, durable: bool = True) -> None:
        self.path = Path(path)
        self.busy_timeout = float(busy_timeout)
        self.durable = bool(durable)  # False: no transaction waits for the disk (see transaction())
        self._local = threading.local()
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._closed = False
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not self.path.exists():
            fd = os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600)
            os.close(fd)
        with self.transaction() as conn:
            migrate(conn)

    # ----------------------------------------------------------------------- connections

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        deadline = time.monotonic() + self.busy_timeout
        while True:  # switching to WAL needs a moment alone with the file; the busy handler does not cover it
            try:
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        if mode.lower() != "wal":
            raise NodeError(f"the node database could not switch to WAL mode (it is in {mode!r} mode)")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA synchronous = FULL")
        return conn

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (opened on first use; a forked child opens its own)."""
        if self._closed:
            raise NodeError("the node database is closed")
        conn = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "pid", None) != os.getpid():
            conn = self._connect()
            self._local.conn = conn
            self._local.pid = os.getpid()
            self._local.durable = True
            with self._lock:
                self._connections.append(conn)
        return conn

    def data_version(self) -> int:
        """A number that changes when another connection (thread or process) commits: a cheap "anything new?"."""
        return int(self.connection().execute("PRAGMA data_version").fetchone()[0])

    _savepoints = itertools.count()

    @contextmanager
    def transaction(self, *, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """A write transaction (``BEGIN IMMEDIATE``): committed on success, rolled back on any exception.

        Nested on the same thread it is a savepoint: an exception rolls back the
        inner part only, and the outer transaction decides what is committed.
        ``durable=False``: the commit is not flushed to disk (it survives the
        process dying, not a power loss); about 10x cheaper. A database opened
        with ``durable=False`` makes every transaction so.
        """
        conn = self.connection()
        durable = durable and self.durable
        if not conn.in_transaction and getattr(self._local, "durable", True) != durable:
            conn.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
            self._local.durable = durable
        if conn.in_transaction:
            name = f"sp{next(self._savepoints)}"
            conn.execute(f"SAVEPOINT {name}")
            try:
                yield conn
            except BaseException:
                conn.execute(f"ROLLBACK TO {name}")
                conn.execute(f"RELEASE {name}")
                raise
            conn.execute(f"RELEASE {name}")
            return
        # This process's writers queue on a lock instead of SQLite's busy handler, which sleeps for milliseconds
        # between retries; other processes still wait in the busy handler.
        with self._write_lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def close(self) -> None:
        """Close every connection this object opened (connections must not be in use by other threads)."""
        self._closed = True
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------------- schema

    def schema_version(self) -> int:
        return int(self.connection().execute("SELECT version FROM schema_version").fetchone()[0])

    def tables(self) -> list[str]:
        rows = self.connection().execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        return [name for (name,) in rows]

    # ----------------------------------------------------------------------- parties (the operator admits them)

    def admit_party(
        self, signing_key: bytes, hpke_key: bytes, *, name: str = "", now: int | None = None
    ) -> PartyRecord:
        """Admit a party (the operator's act), or re-admit a revoked one; its id is SHA-256 of ``signing_key``."""
        signing_key = require_bytes("signing_key", signing_key, 32)
        hpke_key = require_bytes("hpke_key", hpke_key, 32)
        if not isinstance(name, str):
            raise InvalidArgumentError(f"name must be a str, not {type(name).__name__}")
        party_id = hashlib.sha256(signing_key).digest()
        now = int(time.time()) if now is None else int(now)
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO parties (party_id, signing_key, hpke_key, name, admitted_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (party_id) DO UPDATE SET hpke_key = excluded.hpke_key, name = excluded.name, "
                "admitted_at = excluded.admitted_at, revoked_at = NULL",
                (party_id, signing_key, hpke_key, name, now),
            )
        return self.party(party_id)

    def revoke_party(self, party_id: bytes, *, now: int | None = None) -> None:
        """Withdraw a party's admission (its records stay; its requests are refused from now on)."""
        party_id = require_bytes("party_id", party_id, 32)
        with self.transaction() as conn:
            cursor = conn.execute(
                "UPDATE parties SET revoked_at = ? WHERE party_id = ?",
                (int(time.time()) if now is None else int(now), party_id),
            )
            if cursor.rowcount == 0:
                raise NotFoundError(f"no party {party_id.hex()}")

    def find_party(self, party_id: bytes) -> PartyRecord | None:
        row = (
            self.connection()
            .execute(
                "SELECT party_id, signing_key, hpke_key, name, admitted_at, revoked_at FROM parties WHERE party_id = ?",
                (require_bytes("party_id", party_id, 32),),
            )
            .fetchone()
        )
        return None if row is None else PartyRecord(*row)

    def party(self, party_id: bytes) -> PartyRecord:
        record = self.find_party(party_id)
        if record is None:
            raise NotFoundError(f"no party {bytes(party_id).hex()}")
        return record

    def parties(self) -> list[PartyRecord]:
        rows = self.connection().execute(
            "SELECT party_id, signing_key, hpke_key, name, admitted_at, revoked_at FROM parties ORDER BY admitted_at"
        )
        return [PartyRecord(*row) for row in rows]


# --------------------------------------------------------------------------- data access for the node's requests
# Each takes the caller's connection (inside its transaction), so a request's reads and writes are one unit.


def dataset_row(conn: sqlite3.Connection, dataset_id: bytes) -> tuple[bytes, int, bytes | None]:
    """``(owner, uses, policy bytes or None)`` of a dataset; ``NotFoundError`` if the node holds none."""
    row = conn.execute(
        "SELECT d.owner, d.uses, p.policy FROM datasets d LEFT JOIN dataset_policies p USING (dataset_id) "
        "WHERE d.dataset_id = ?",
        (dataset_id,),
    ).fetchone()
    if row is None:
        raise NotFoundError(f"no dataset {dataset_id.hex()}")
    return row[0], row[1], row[2]


def open_tasks_using(conn: sqlite3.Connection, dataset_id: bytes) -> list[bytes]:
    """The ids of the open tasks (:data:`OPEN_TASK_STATUSES`) with an input naming the dataset."""
    marks = ", ".join("?" for _ in OPEN_TASK_STATUSES)
    rows = conn.execute(
        f"SELECT DISTINCT t.task_id FROM task_inputs i JOIN tasks t USING (task_id) "
        f"WHERE i.dataset_id = ? AND t.status IN ({marks})",
        (dataset_id, *OPEN_TASK_STATUSES),
    )
    return [task_id for (task_id,) in rows]


def blob_referenced(conn: sqlite3.Connection, blob_id: str) -> bool:
    """Whether a dataset or an undeleted output still needs the blob."""
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM datasets WHERE dataset_id = ?) "
        "OR EXISTS (SELECT 1 FROM result_outputs WHERE blob_id = ? AND deleted_at IS NULL)",
        (bytes.fromhex(blob_id), blob_id),
    ).fetchone()
    return bool(row[0])


def task_row(conn: sqlite3.Connection, task_id: bytes) -> tuple[bytes, str, str | None]:
    """``(manifest bytes, stored status, error)`` of a task; ``NotFoundError`` if there is none."""
    row = conn.execute("SELECT manifest, status, error FROM tasks WHERE task_id = ?", (task_id,)).fetchone()
    if row is None:
        raise NotFoundError(f"no task {task_id.hex()}")
    return row[0], row[1], row[2]


def task_approvals(conn: sqlite3.Connection, task_id: bytes) -> dict[bytes, bytes]:
    rows = conn.execute("SELECT party_id, signature FROM approvals WHERE task_id = ?", (task_id,))
    return {party_id: signature for party_id, signature in rows}


def task_grants(conn: sqlite3.Connection, task_id: bytes) -> dict[str, bytes]:
    rows = conn.execute("SELECT slot, ciphertext FROM grants WHERE task_id = ?", (task_id,))
    return {slot: ciphertext for slot, ciphertext in rows}
