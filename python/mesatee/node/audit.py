"""The node's append-only audit log: every accepted and refused request, hash-chained.

Entry ``seq`` (1, 2, 3, … without gaps) stores ``prev_hash`` (the previous
entry's hash; 32 zero bytes for the first) and::

    hash = SHA-256(prev_hash ‖ canonical({seq, time, party, action, target, outcome, detail}))

so editing, removing, reordering or inserting an entry breaks the chain at
that entry or the next, which :func:`verify_audit_log` reports by ``seq``.
Appending takes place in the transaction of the request it records (the
caller's), so a request's effect and its entry commit together or not at all.

Limit: whoever can write the database can truncate the log's tail or rewrite
it entirely with fresh hashes. :func:`head` gives the last ``(seq, hash)`` for
publishing elsewhere (to the parties, another machine); ``verify_audit_log(...,
expected_head=...)`` then also detects that.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from mesatee.core import canonical
from mesatee.errors import AuditLogError, InvalidArgumentError

__all__ = [
    "ACCEPTED",
    "GENESIS_HASH",
    "MAX_DETAIL",
    "OPERATOR",
    "OUTCOMES",
    "REFUSED",
    "AuditEntry",
    "AuditHead",
    "append",
    "entries",
    "entry_hash",
    "head",
    "verify_audit_log",
]

GENESIS_HASH = bytes(32)
OPERATOR = "operator"
ACCEPTED = "accepted"
REFUSED = "refused"
OUTCOMES = (ACCEPTED, REFUSED)
MAX_DETAIL = 2000  # characters; longer details (attacker-chosen text in refusals) are cut
_MAX_FIELD = 256

_COLUMNS = "seq, time, party, action, target, outcome, detail, prev_hash, hash"


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    time: int
    party: str
    action: str
    target: str
    outcome: str
    detail: str
    prev_hash: bytes
    hash: bytes

    def fields(self) -> dict[str, Any]:
        """The hashed fields (everything but the two hashes)."""
        return {
            "seq": self.seq,
            "time": self.time,
            "party": self.party,
            "action": self.action,
            "target": self.target,
            "outcome": self.outcome,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class AuditHead:
    """The end of a verified log: how many entries, the last one's seq and hash (GENESIS_HASH when empty)."""

    entries: int
    seq: int
    hash: bytes


def entry_hash(prev_hash: bytes, fields: dict[str, Any]) -> bytes:
    return hashlib.sha256(prev_hash + canonical.encode(fields)).digest()


def _text(name: str, value: object, limit: int) -> str:
    if not isinstance(value, str):
        raise InvalidArgumentError(f"audit {name} must be a str, not {type(value).__name__}")
    # Lone surrogates have no UTF-8 form; replace them rather than lose the entry.
    value = value.encode("utf-8", "replace").decode("utf-8")
    return value if len(value) <= limit else value[: limit - 1] + "…"


def head(conn: sqlite3.Connection) -> tuple[int, bytes]:
    """The last entry's ``(seq, hash)``, or ``(0, GENESIS_HASH)`` for an empty log (not verified)."""
    row = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    return (0, GENESIS_HASH) if row is None else (int(row[0]), bytes(row[1]))


def append(
    conn: sqlite3.Connection,
    *,
    party: str,
    action: str,
    target: str,
    outcome: str,
    detail: str = "",
    now: int | None = None,
) -> AuditEntry:
    """Append an entry inside the caller's write transaction (``Database.transaction()``).

    ``party`` is a party id in hex, or ``"operator"``; ``outcome`` is ``"accepted"`` or ``"refused"``.
    """
    if not conn.in_transaction:
        raise InvalidArgumentError("audit entries are appended inside the transaction of the request they record")
    if outcome not in OUTCOMES:
        raise InvalidArgumentError(f"audit outcome must be one of {OUTCOMES}, not {outcome!r}")
    last_seq, prev_hash = head(conn)
    fields = {
        "seq": last_seq + 1,
        "time": int(time.time()) if now is None else int(now),
        "party": _text("party", party, _MAX_FIELD),
        "action": _text("action", action, _MAX_FIELD),
        "target": _text("target", target, _MAX_FIELD),
        "outcome": outcome,
        "detail": _text("detail", detail, MAX_DETAIL),
    }
    entry = AuditEntry(**fields, prev_hash=prev_hash, hash=entry_hash(prev_hash, fields))
    conn.execute(
        f"INSERT INTO audit ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (*fields.values(), entry.prev_hash, entry.hash),
    )
    return entry


def entries(conn: sqlite3.Connection, *, since: int = 0) -> Iterator[AuditEntry]:
    """The stored entries with ``seq > since``, in order (as stored: use :func:`verify_audit_log` to check them)."""
    for row in conn.execute(f"SELECT {_COLUMNS} FROM audit WHERE seq > ? ORDER BY seq", (since,)):
        yield AuditEntry(*row[:7], prev_hash=bytes(row[7]), hash=bytes(row[8]))


def verify_audit_log(conn: sqlite3.Connection, *, expected_head: tuple[int, bytes] | None = None) -> AuditHead:
    """Check the whole chain; return its head, or raise ``AuditLogError`` naming the first bad ``seq``.

    ``expected_head``: a ``(seq, hash)`` published earlier; the log must still contain exactly that entry.
    """
    expected_seq = 1
    prev_hash = GENESIS_HASH
    count = 0
    found_head = expected_head is None or expected_head == (0, GENESIS_HASH)
    for row in conn.execute(f"SELECT {_COLUMNS} FROM audit ORDER BY seq"):
        seq = row[0]
        if seq != expected_seq:
            raise AuditLogError(
                f"audit log: entry {expected_seq} is missing (the next stored is {seq})", seq=expected_seq
            )
        try:
            entry = AuditEntry(*row[:7], prev_hash=bytes(row[7]), hash=bytes(row[8]))
            if entry.outcome not in OUTCOMES:
                raise AuditLogError(f"audit log: entry {seq} has an unknown outcome", seq=seq)
            if entry.prev_hash != prev_hash:
                raise AuditLogError(f"audit log: entry {seq} does not follow entry {seq - 1}", seq=seq)
            if entry_hash(prev_hash, entry.fields()) != entry.hash:
                raise AuditLogError(f"audit log: entry {seq} was modified (its hash does not match)", seq=seq)
        except (InvalidArgumentError, TypeError) as exc:
            raise AuditLogError(f"audit log: entry {seq} is malformed: {exc}", seq=seq) from None
        if expected_head is not None and seq == expected_head[0]:
            if entry.hash != expected_head[1]:
                raise AuditLogError(f"audit log: entry {seq} is not the one published earlier", seq=seq)
            found_head = True
        prev_hash = entry.hash
        expected_seq += 1
        count += 1
    if not found_head:
        assert expected_head is not None
        raise AuditLogError(
            f"audit log: ends at entry {count}, before the published entry {expected_head[0]} (truncated)",
            seq=count + 1,
        )
    return AuditHead(count, count, prev_hash)
