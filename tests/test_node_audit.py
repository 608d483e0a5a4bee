"""The hash-chained audit log: every edit, removal, reordering or insertion made in SQLite is detected."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from mesatee.core import canonical
from mesatee.errors import AuditLogError, InvalidArgumentError
from mesatee.node import audit
from mesatee.node.database import Database


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database(tmp_path / "node.db")
    with database.transaction() as conn:
        for i in range(1, 6):
            audit.append(
                conn,
                party=OPERATOR if i == 1 else ("ab" * 32),
                action=f"action{i}",
                target=f"target{i}",
                outcome=audit.REFUSED if i == 3 else audit.ACCEPTED,
                detail=f"detail {i}",
                now=1000 + i,
            )
    return database


OPERATOR = audit.OPERATOR


def _raw(db: Database) -> sqlite3.Connection:
    """A plain connection without the append-only triggers, as someone editing the file would have."""
    conn = sqlite3.connect(db.path, isolation_level=None)
    conn.execute("DROP TRIGGER IF EXISTS audit_no_update")
    conn.execute("DROP TRIGGER IF EXISTS audit_no_delete")
    return conn


def _bad_seq(db: Database) -> int | None:
    with pytest.raises(AuditLogError) as exc:
        audit.verify_audit_log(db.connection())
    assert exc.value.status == 96
    return exc.value.seq


def test_an_intact_log_verifies_and_its_hashes_follow_the_spec(db: Database) -> None:
    result = audit.verify_audit_log(db.connection())
    assert (result.entries, result.seq) == (5, 5)
    rows = list(audit.entries(db.connection()))
    assert [e.seq for e in rows] == [1, 2, 3, 4, 5]
    assert rows[0].prev_hash == bytes(32)
    for prev, entry in zip([None, *rows], rows, strict=False):
        assert entry.prev_hash == (prev.hash if prev else bytes(32))
        fields = {
            "seq": entry.seq,
            "time": entry.time,
            "party": entry.party,
            "action": entry.action,
            "target": entry.target,
            "outcome": entry.outcome,
            "detail": entry.detail,
        }
        assert entry.hash == hashlib.sha256(entry.prev_hash + canonical.encode(fields)).digest()
    assert result.hash == rows[-1].hash
    assert audit.head(db.connection()) == (5, rows[-1].hash)
    assert [e.seq for e in audit.entries(db.connection(), since=3)] == [4, 5]


def test_an_empty_log_verifies(tmp_path: Path) -> None:
    result = audit.verify_audit_log(Database(tmp_path / "node.db").connection())
    assert (result.entries, result.hash) == (0, bytes(32))


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("time", 1),
        ("party", "operator2"),
        ("action", "other"),
        ("target", "elsewhere"),
        ("outcome", "accepted"),  # entry 3 was refused
        ("detail", "nothing to see"),
        ("hash", bytes(32)),
        ("prev_hash", bytes(32)),
    ],
)
def test_an_edited_entry_is_detected(db: Database, column: str, value: object) -> None:
    _raw(db).execute(f"UPDATE audit SET {column} = ? WHERE seq = 3", (value,))
    assert _bad_seq(db) == 3


def test_an_edited_entry_with_a_recomputed_hash_breaks_the_next_link(db: Database) -> None:
    entry = list(audit.entries(db.connection()))[2]
    fields = entry.fields() | {"outcome": "accepted"}
    _raw(db).execute(
        "UPDATE audit SET outcome = 'accepted', hash = ? WHERE seq = 3", (audit.entry_hash(entry.prev_hash, fields),)
    )
    assert _bad_seq(db) == 4


@pytest.mark.parametrize("seq", [1, 3, 5])
def test_a_removed_entry_is_detected(db: Database, seq: int) -> None:
    _raw(db).execute("DELETE FROM audit WHERE seq = ?", (seq,))
    if seq == 5:  # the tail: only a published head shows it (see below)
        assert audit.verify_audit_log(db.connection()).entries == 4
    else:
        assert _bad_seq(db) == seq


def test_a_removed_entry_with_renumbered_successors_is_detected(db: Database) -> None:
    raw = _raw(db)
    raw.execute("DELETE FROM audit WHERE seq = 2")
    for seq in (3, 4, 5):
        raw.execute("UPDATE audit SET seq = ? WHERE seq = ?", (seq - 1, seq))
    assert _bad_seq(db) == 2


def test_reordered_entries_are_detected(db: Database) -> None:
    raw = _raw(db)
    raw.execute("UPDATE audit SET seq = 100 WHERE seq = 2")
    raw.execute("UPDATE audit SET seq = 2 WHERE seq = 4")
    raw.execute("UPDATE audit SET seq = 4 WHERE seq = 100")
    assert _bad_seq(db) == 2


def test_swapped_contents_are_detected(db: Database) -> None:
    raw = _raw(db)
    a, b = raw.execute("SELECT action, target FROM audit WHERE seq IN (2, 4) ORDER BY seq").fetchall()
    raw.execute("UPDATE audit SET action = ?, target = ? WHERE seq = 2", b)
    raw.execute("UPDATE audit SET action = ?, target = ? WHERE seq = 4", a)
    assert _bad_seq(db) == 2


def test_an_inserted_entry_is_detected(db: Database) -> None:
    raw = _raw(db)
    for seq in (5, 4, 3):
        raw.execute("UPDATE audit SET seq = ? WHERE seq = ?", (seq + 1, seq))
    prev = list(audit.entries(db.connection()))[1]
    fields = {
        "seq": 3,
        "time": 1,
        "party": "operator",
        "action": "forged",
        "target": "x",
        "outcome": "accepted",
        "detail": "",
    }
    raw.execute(
        "INSERT INTO audit VALUES (3, 1, 'operator', 'forged', 'x', 'accepted', '', ?, ?)",
        (prev.hash, audit.entry_hash(prev.hash, fields)),
    )
    assert _bad_seq(db) == 4  # the forged entry links to 2, but the real third no longer links to it


def test_an_appended_forgery_with_a_wrong_hash_is_detected(db: Database) -> None:
    _raw(db).execute(
        "INSERT INTO audit VALUES (6, 1, 'operator', 'forged', 'x', 'accepted', '', ?, ?)", (b"\1" * 32,) * 2
    )
    assert _bad_seq(db) == 6


def test_a_published_head_detects_truncation_and_rewriting(db: Database) -> None:
    published = audit.head(db.connection())
    assert audit.verify_audit_log(db.connection(), expected_head=published).entries == 5
    _raw(db).execute("DELETE FROM audit WHERE seq = 5")
    with pytest.raises(AuditLogError, match="truncated") as exc:
        audit.verify_audit_log(db.connection(), expected_head=published)
    assert exc.value.seq == 5
    with db.transaction() as conn:  # a different fifth entry, correctly chained
        audit.append(conn, party="operator", action="other", target="", outcome="accepted")
    with pytest.raises(AuditLogError, match="published") as exc:
        audit.verify_audit_log(db.connection(), expected_head=published)
    assert exc.value.seq == 5


def test_the_database_refuses_updates_and_deletes_of_the_log(db: Database) -> None:
    with pytest.raises(sqlite3.IntegrityError, match="append-only"), db.transaction() as conn:
        conn.execute("UPDATE audit SET detail = '' WHERE seq = 1")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"), db.transaction() as conn:
        conn.execute("DELETE FROM audit")
    audit.verify_audit_log(db.connection())


def test_appending_happens_in_the_callers_transaction(db: Database) -> None:
    with pytest.raises(InvalidArgumentError, match="transaction"):
        audit.append(db.connection(), party="operator", action="a", target="t", outcome="accepted")
    with pytest.raises(RuntimeError), db.transaction() as conn:
        audit.append(conn, party="operator", action="a", target="t", outcome="accepted")
        raise RuntimeError("the request failed")
    assert audit.head(db.connection())[0] == 5  # rolled back with the request
    audit.verify_audit_log(db.connection())


def test_entries_are_bounded_and_checked(db: Database) -> None:
    with db.transaction() as conn:
        with pytest.raises(InvalidArgumentError, match="outcome"):
            audit.append(conn, party="operator", action="a", target="t", outcome="maybe")
        with pytest.raises(InvalidArgumentError, match="str"):
            audit.append(conn, party=b"x", action="a", target="t", outcome="accepted")  # type: ignore[arg-type]
        long = audit.append(
            conn, party="operator", action="a", target="t" * 1000, outcome="refused", detail="\udc80" + "d" * 10_000
        )
    assert len(long.detail) == audit.MAX_DETAIL and len(long.target) == 256
    audit.verify_audit_log(db.connection())
