"""The node's SQLite database: schema and migration, transactions, threads and processes at once."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import stat
import threading
from pathlib import Path

import pytest

from mesatee.errors import NodeError, NotFoundError
from mesatee.node.database import SCHEMA_VERSION, Database, migrate

TABLES = {
    "approvals",
    "audit",
    "dataset_policies",
    "datasets",
    "functions",
    "grants",
    "parties",
    "request_nonces",
    "result_outputs",
    "results",
    "schema_version",
    "task_inputs",
    "task_participants",
    "tasks",
}


def _key(i: int) -> bytes:
    return bytes([i]) * 32


def test_a_new_database_has_the_schema_and_its_pragmas(tmp_path: Path) -> None:
    with Database(tmp_path / "node.db") as db:
        assert db.schema_version() == SCHEMA_VERSION
        assert set(db.tables()) == TABLES
        conn = db.connection()
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 30000
    assert stat.S_IMODE((tmp_path / "node.db").stat().st_mode) == 0o600


def test_reopening_keeps_the_data_and_migration_is_idempotent(tmp_path: Path) -> None:
    with Database(tmp_path / "node.db") as db:
        db.admit_party(_key(1), _key(2), name="alice", now=100)
    with Database(tmp_path / "node.db") as db:
        assert [p.name for p in db.parties()] == ["alice"]
        with db.transaction() as conn:
            assert migrate(conn) == SCHEMA_VERSION


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    with Database(tmp_path / "node.db") as db, db.transaction() as conn:
        conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    with pytest.raises(NodeError, match="schema version"):
        Database(tmp_path / "node.db")


def test_parties_are_admitted_revoked_and_readmitted(tmp_path: Path) -> None:
    db = Database(tmp_path / "node.db")
    record = db.admit_party(_key(1), _key(2), name="alice", now=100)
    assert record.admitted and record.admitted_at == 100
    assert record.party_id == __import__("hashlib").sha256(_key(1)).digest()
    db.revoke_party(record.party_id, now=200)
    assert not db.party(record.party_id).admitted
    assert db.admit_party(_key(1), _key(3), now=300).admitted
    with pytest.raises(NotFoundError):
        db.party(_key(9))
    with pytest.raises(NotFoundError):
        db.revoke_party(_key(9))
    assert db.find_party(_key(9)) is None


def test_transactions_roll_back_and_nest_as_savepoints(tmp_path: Path) -> None:
    db = Database(tmp_path / "node.db")
    with pytest.raises(RuntimeError), db.transaction() as conn:
        conn.execute("INSERT INTO parties VALUES (?, ?, ?, '', 1, NULL)", (_key(1), _key(1), _key(1)))
        raise RuntimeError("undo")
    assert db.parties() == []
    with db.transaction() as conn:
        conn.execute("INSERT INTO parties VALUES (?, ?, ?, 'outer', 1, NULL)", (_key(1), _key(1), _key(1)))
        with pytest.raises(RuntimeError), db.transaction() as inner:
            inner.execute("INSERT INTO parties VALUES (?, ?, ?, 'inner', 1, NULL)", (_key(2), _key(2), _key(2)))
            raise RuntimeError("undo inner only")
    assert [p.name for p in db.parties()] == ["outer"]


def test_constraints_hold(tmp_path: Path) -> None:
    db = Database(tmp_path / "node.db")
    with pytest.raises(sqlite3.IntegrityError), db.transaction() as conn:  # foreign key: no such owner
        conn.execute("INSERT INTO datasets VALUES (?, ?, 1, 'mesatee-v1', 0, 1)", (_key(5), _key(6)))
    with pytest.raises(sqlite3.IntegrityError), db.transaction() as conn:  # length check
        conn.execute("INSERT INTO parties VALUES (?, ?, ?, '', 1, NULL)", (b"short", _key(1), _key(1)))
    db.admit_party(_key(1), _key(1))
    owner = db.parties()[0].party_id
    with pytest.raises(sqlite3.IntegrityError), db.transaction() as conn:  # status check
        conn.execute(
            "INSERT INTO tasks (task_id, manifest, manifest_hash, creator, status, created_at, updated_at, "
            "expires_at) VALUES (?, x'00', ?, ?, 'bogus', 1, 1, 1)",
            (bytes(16), _key(7), owner),
        )
    with pytest.raises(sqlite3.IntegrityError), db.transaction() as conn:  # one public function per name/version
        conn.execute("INSERT INTO functions VALUES ('echo', 1, NULL, x'', 1)")
        conn.execute("INSERT INTO functions VALUES ('echo', 1, NULL, x'', 1)")
    with db.transaction() as conn:  # a dataset's policy goes with it
        conn.execute("INSERT INTO datasets VALUES (?, ?, 1, 'mesatee-v1', 0, 1)", (_key(5), owner))
        conn.execute("INSERT INTO dataset_policies VALUES (?, x'80', 1)", (_key(5),))
        conn.execute("DELETE FROM datasets WHERE dataset_id = ?", (_key(5),))
        assert conn.execute("SELECT count(*) FROM dataset_policies").fetchone()[0] == 0


def test_each_thread_has_its_own_connection(tmp_path: Path) -> None:
    db = Database(tmp_path / "node.db")
    seen: list[sqlite3.Connection] = []

    def work(i: int) -> None:
        seen.append(db.connection())
        for j in range(20):
            with db.transaction() as conn:
                conn.execute("INSERT INTO request_nonces VALUES (?, ?, 0)", (_key(i), j.to_bytes(2, "big")))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(c) for c in seen}) == 4
    assert db.connection().execute("SELECT count(*) FROM request_nonces").fetchone()[0] == 80
    db.close()
    with pytest.raises(NodeError, match="closed"):
        db.connection()


def _inserter(path: str, worker: int, count: int, start: multiprocessing.Event) -> None:  # type: ignore[valid-type]
    db = Database(path)  # both processes may create the database
    start.wait(60)
    for i in range(count):
        with db.transaction() as conn:
            # read-then-write: the next counter value; BEGIN IMMEDIATE keeps the two processes from interleaving
            (n,) = conn.execute("SELECT count(*) FROM request_nonces").fetchone()
            conn.execute("INSERT INTO request_nonces VALUES (?, ?, ?)", (_key(worker), i.to_bytes(4, "big"), n))
    db.close()


def test_two_processes_insert_at_once(tmp_path: Path) -> None:
    path = str(tmp_path / "sub" / "node.db")
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    workers = [ctx.Process(target=_inserter, args=(path, w, 200, start)) for w in (1, 2)]
    for w in workers:
        w.start()
    start.set()
    for w in workers:
        w.join(timeout=120)
        assert w.exitcode == 0
    db = Database(path)
    rows = db.connection().execute("SELECT party_id, expires_at FROM request_nonces").fetchall()
    assert len(rows) == 400
    # every transaction saw all the rows committed before it: the counters are exactly 0..399
    assert sorted(n for _, n in rows) == list(range(400))
    assert db.schema_version() == SCHEMA_VERSION
    assert os.path.exists(path)
