"""Signed requests: every state-changing request a party makes to the node (see "Signed requests" in formats.md).

A request names the party, the action, its target, the SHA-256 of its body, a
timestamp and a random nonce, and carries the party's Ed25519 signature over
``"mesatee/request/v1" ‖ SHA-256(canonical fields)``. The node's
:class:`RequestVerifier` refuses, each with a :class:`RequestError` naming the
reason (``reason`` attribute) and an audit entry:

- ``malformed``: not a canonical request of the expected fields and types;
- ``unsigned``: no signature;
- ``unknown-party`` / ``not-admitted``: the operator never admitted the party, or revoked it;
- ``signature``: the signature does not verify under the party's admitted key;
- ``body``: the body does not hash to the signed digest;
- ``stale``: the timestamp is more than the window (300 s) away from the node's clock;
- ``replayed``: the party's nonce was seen within the window.

Nonces live in the database, shared by every process of the node; a nonce is
kept until its request would be stale anyway, then purged.

The node is untrusted: these checks protect the node's service (who may queue
what), never the data — the enclave checks approvals and grants itself.
"""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from mesatee.core import canonical, hpke
from mesatee.core.binary import require_bytes
from mesatee.errors import FormatError, InvalidArgumentError, MesateeError, RequestError
from mesatee.node import audit
from mesatee.node.database import Database, PartyRecord
from mesatee.parties import Party

__all__ = [
    "DEFAULT_WINDOW",
    "MAX_REQUEST_SIZE",
    "MAX_TARGET",
    "NONCE_SIZE",
    "REQUEST_VERSION",
    "AcceptedRequest",
    "RequestVerifier",
    "SignedRequest",
    "purge_nonces",
    "sign_request",
]

REQUEST_VERSION = 1
NONCE_SIZE = 16
MIN_NONCE_SIZE = 16
MAX_NONCE_SIZE = 64
SIGNATURE_SIZE = 64
DEFAULT_WINDOW = 300
MAX_REQUEST_SIZE = 4096
MAX_TARGET = 256
_I64_MAX = 2**63 - 1
_ACTION = re.compile(r"[a-z][a-z0-9_.-]{0,63}")
_FIELDS = ("version", "party_id", "action", "target", "body_digest", "timestamp", "nonce")


@dataclass(frozen=True)
class SignedRequest:
    """A party's request; ``signature`` is empty for an unsigned one (which the node refuses)."""

    party_id: bytes
    action: str
    target: str
    body_digest: bytes
    timestamp: int
    nonce: bytes
    signature: bytes = b""

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "party_id", require_bytes("party_id", self.party_id, 32))
        if not isinstance(self.action, str) or not _ACTION.fullmatch(self.action):
            raise InvalidArgumentError(f"action {str(self.action)[:80]!r} is not 1..64 characters of [a-z0-9_.-]")
        if not isinstance(self.target, str):
            raise InvalidArgumentError(f"target must be a str, not {type(self.target).__name__}")
        if len(self.target) > MAX_TARGET:
            raise InvalidArgumentError(f"target is longer than {MAX_TARGET} characters")
        try:
            self.target.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidArgumentError("target is not encodable as UTF-8") from None
        set_(self, "body_digest", require_bytes("body_digest", self.body_digest, 32))
        if isinstance(self.timestamp, bool) or not isinstance(self.timestamp, int):
            raise InvalidArgumentError(f"timestamp must be an int, not {type(self.timestamp).__name__}")
        if not 0 <= self.timestamp <= _I64_MAX:
            raise InvalidArgumentError(f"timestamp {self.timestamp} is out of range")
        nonce = require_bytes("nonce", self.nonce)
        if not MIN_NONCE_SIZE <= len(nonce) <= MAX_NONCE_SIZE:
            raise InvalidArgumentError(f"nonce must be {MIN_NONCE_SIZE}..{MAX_NONCE_SIZE} bytes, got {len(nonce)}")
        set_(self, "nonce", nonce)
        signature = require_bytes("signature", self.signature)
        if len(signature) not in (0, SIGNATURE_SIZE):
            raise InvalidArgumentError(f"signature must be {SIGNATURE_SIZE} bytes, got {len(signature)}")
        set_(self, "signature", signature)

    def fields(self) -> dict[str, Any]:
        """The signed fields, as encoded (everything but the signature)."""
        return {
            "version": REQUEST_VERSION,
            "party_id": self.party_id,
            "action": self.action,
            "target": self.target,
            "body_digest": self.body_digest,
            "timestamp": self.timestamp,
            "nonce": self.nonce,
        }

    def message(self) -> bytes:
        """What the party signs: ``"mesatee/request/v1" ‖ SHA-256(canonical fields)``."""
        return hpke.request_message(canonical.encode(self.fields()))

    def to_bytes(self) -> bytes:
        """The request on the wire: the canonical map of the fields and ``signature`` (omitted when unsigned)."""
        value = self.fields()
        if self.signature:
            value["signature"] = self.signature
        return canonical.encode(value)

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview, *, max_size: int = MAX_REQUEST_SIZE) -> SignedRequest:
        """Parse strictly; ``RequestError`` (reason ``malformed``) for anything but a canonical request."""
        try:
            data = require_bytes("request", data)
            if len(data) > max_size:
                raise InvalidArgumentError(f"{len(data)} bytes exceed the limit of {max_size}")
            value = canonical.decode(data, max_size=max_size)
            if not isinstance(value, Mapping):
                raise InvalidArgumentError(f"a request is a map, not {type(value).__name__}")
            for key in value:
                if key not in (*_FIELDS, "signature"):
                    raise InvalidArgumentError(f"unknown field {str(key)[:64]!r}")
            for key in _FIELDS:
                if key not in value:
                    raise InvalidArgumentError(f"missing field {key!r}")
            if value["version"] != REQUEST_VERSION or isinstance(value["version"], bool):
                raise InvalidArgumentError(f"unsupported version {str(value['version'])[:20]!r}")
            signature = value.get("signature", b"")
            if "signature" in value and not (isinstance(signature, bytes) and signature):
                raise InvalidArgumentError("signature must be non-empty bytes when present")
            return cls(
                party_id=value["party_id"],
                action=value["action"],
                target=value["target"],
                body_digest=value["body_digest"],
                timestamp=value["timestamp"],
                nonce=value["nonce"],
                signature=signature,
            )
        except (InvalidArgumentError, FormatError) as exc:
            raise RequestError(f"request refused: malformed: {exc}", reason="malformed") from None

    @classmethod
    def create(
        cls,
        key: Ed25519PrivateKey,
        party_id: bytes,
        action: str,
        target: str,
        body: bytes = b"",
        *,
        body_digest: bytes | None = None,
        now: int | None = None,
        nonce: bytes | None = None,
    ) -> SignedRequest:
        """A request signed with ``key`` (for a ``Party`` use :func:`sign_request`).

        ``body_digest``: the body's SHA-256, given instead of the body (a stream hashed beforehand).
        """
        if body_digest is None:
            body_digest = hashlib.sha256(require_bytes("body", body)).digest()
        elif body:
            raise InvalidArgumentError("give the body or its digest, not both")
        unsigned = cls(
            party_id=party_id,
            action=action,
            target=target,
            body_digest=body_digest,
            timestamp=int(time.time()) if now is None else int(now),
            nonce=os.urandom(NONCE_SIZE) if nonce is None else nonce,
        )
        return cls(**{**unsigned.__dict__, "signature": key.sign(unsigned.message())})


def sign_request(
    party: Party,
    action: str,
    target: str,
    body: bytes = b"",
    *,
    body_digest: bytes | None = None,
    now: int | None = None,
    nonce: bytes | None = None,
) -> SignedRequest:
    """``party``'s signed request to ``action`` on ``target`` with ``body`` (or its ``body_digest``), timestamped
    now with a fresh nonce."""
    if not isinstance(party, Party):
        raise InvalidArgumentError(f"party must be a Party, not {type(party).__name__}")
    # Party offers no generic signing method (by design: its key signs only labelled statements); the request label
    # is one of those, so the node layer reaches for the key here, and only here.
    key: Ed25519PrivateKey = party._signing_key
    return SignedRequest.create(
        key, party.party_id, action, target, body, body_digest=body_digest, now=now, nonce=nonce
    )


def purge_nonces(conn: sqlite3.Connection, now: int) -> int:
    """Forget nonces whose requests are stale by now; return how many."""
    return conn.execute("DELETE FROM request_nonces WHERE expires_at < ?", (int(now),)).rowcount


@dataclass(frozen=True)
class AcceptedRequest:
    """A request that passed every check: who made it (as admitted), and the request."""

    party: PartyRecord
    request: SignedRequest
    conn: sqlite3.Connection


class RequestVerifier:
    """The node's checks of signed requests, against the database's parties and nonces.

    ``window``: how far (seconds) a request's timestamp may be from the node's clock, either way.
    ``clock``: the node's clock (``time.time``); tests pass their own.
    """

    def __init__(self, db: Database, *, window: int = DEFAULT_WINDOW, clock: Callable[[], float] = time.time) -> None:
        if isinstance(window, bool) or not isinstance(window, int) or window <= 0:
            raise InvalidArgumentError(f"window must be a positive int of seconds, not {window!r}")
        self.db = db
        self.window = window
        self.clock = clock
        self._next_purge = 0

    def _now(self, now: float | None) -> int:
        return int(self.clock() if now is None else now)

    @staticmethod
    def _signer(conn: sqlite3.Connection, request: SignedRequest) -> PartyRecord:
        """The checks ``unsigned``, ``unknown-party``, ``not-admitted`` and ``signature``: the admitted signer."""
        if not request.signature:
            raise RequestError("request refused: unsigned", reason="unsigned")
        row = conn.execute(
            "SELECT party_id, signing_key, hpke_key, name, admitted_at, revoked_at FROM parties WHERE party_id = ?",
            (request.party_id,),
        ).fetchone()
        if row is None:
            raise RequestError(f"request refused: unknown party {request.party_id.hex()}", reason="unknown-party")
        party = PartyRecord(*row)
        if not party.admitted:
            raise RequestError(
                f"request refused: party {request.party_id.hex()} is not admitted (revoked)", reason="not-admitted"
            )
        try:
            Ed25519PublicKey.from_public_bytes(party.signing_key).verify(request.signature, request.message())
        except (InvalidSignature, ValueError):
            raise RequestError(
                "request refused: the signature does not verify under the party's key", reason="signature"
            ) from None
        return party

    def check(
        self,
        conn: sqlite3.Connection,
        request: SignedRequest,
        *,
        body: bytes | None = None,
        body_digest: bytes | None = None,
        now: int,
    ) -> PartyRecord:
        """Every check, in order, inside the caller's transaction; records the nonce. No audit entry."""
        party = self._signer(conn, request)
        if body_digest is None:
            body_digest = hashlib.sha256(require_bytes("body", body if body is not None else b"")).digest()
        elif body is not None:
            raise InvalidArgumentError("give the body or its digest, not both")
        if require_bytes("body_digest", body_digest, 32) != request.body_digest:
            raise RequestError("request refused: the body does not match the signed digest", reason="body")
        self._check_fresh(request, now)
        if now >= self._next_purge:  # once a second is plenty: a stale request is refused by its timestamp anyway
            purge_nonces(conn, now)
            self._next_purge = now + 1
        cursor = conn.execute(
            "INSERT INTO request_nonces (party_id, nonce, expires_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
            (request.party_id, request.nonce, request.timestamp + self.window),
        )
        if cursor.rowcount == 0:
            raise RequestError("request refused: replayed (this nonce was already used)", reason="replayed")
        return party

    def _check_fresh(self, request: SignedRequest, now: int) -> None:
        if abs(now - request.timestamp) > self.window:
            raise RequestError(
                f"request refused: stale (timestamp {request.timestamp} is {now - request.timestamp:+d} s from the "
                f"node's clock; the window is {self.window} s)",
                reason="stale",
            )

    def authenticate(
        self, request: SignedRequest | bytes, *, action: str, now: float | None = None
    ) -> tuple[SignedRequest, PartyRecord]:
        """Check a request's form, action, signer and freshness, but neither consume its nonce nor audit it.

        For a step that only reserves resources ahead of the request's own acceptance (the service's upload
        staging area): the request itself is accepted later, with every check, by the method it was signed for.
        """
        parsed = request if isinstance(request, SignedRequest) else SignedRequest.from_bytes(request)
        if parsed.action != action:
            raise RequestError(f"request refused: signed for action {parsed.action!r}, not {action!r}", reason="action")
        party = self._signer(self.db.connection(), parsed)
        self._check_fresh(parsed, self._now(now))
        return parsed, party

    @contextmanager
    def accept(
        self,
        request: SignedRequest | bytes,
        *,
        body: bytes | None = None,
        body_digest: bytes | None = None,
        action: str | None = None,
        now: float | None = None,
        durable: bool = True,
    ) -> Iterator[AcceptedRequest]:
        """Check ``request`` and run what it asks in one write transaction, audited either way.

        ``durable=False`` for requests that only read: their nonce and audit entry survive the process dying but
        not a power cut (see ``Database.transaction``).

        Inside the ``with`` block the caller makes the request's change through
        ``accepted.conn``; on success the change, the nonce and an ``accepted``
        entry commit together. If a check fails, or the block raises, the
        transaction is rolled back and a ``refused`` entry (the reason) is
        committed on its own; the nonce of a request whose signature verified
        is consumed then too, so it cannot be replayed later. ``action``, when
        given, is the action this endpoint serves: a request signed for another
        is refused (``reason`` ``action``).
        """
        if self.db.connection().in_transaction:
            raise InvalidArgumentError("accept() opens its own transaction: do not call it inside another one")
        at = self._now(now)
        parsed: SignedRequest | None = request if isinstance(request, SignedRequest) else None
        authenticated = False
        try:
            if parsed is None:
                parsed = SignedRequest.from_bytes(require_bytes("request", request))
            with self.db.transaction(durable=durable) as conn:
                if action is not None and parsed.action != action:
                    raise RequestError(
                        f"request refused: signed for action {parsed.action!r}, not {action!r}", reason="action"
                    )
                try:
                    party = self.check(conn, parsed, body=body, body_digest=body_digest, now=at)
                except RequestError as exc:
                    authenticated = exc.reason == "body"
                    raise
                authenticated = True
                yield AcceptedRequest(party, parsed, conn)
                audit.append(
                    conn,
                    party=parsed.party_id.hex(),
                    action=parsed.action,
                    target=parsed.target,
                    outcome=audit.ACCEPTED,
                    now=at,
                )
        except Exception as exc:
            detail = str(exc) if isinstance(exc, MesateeError) else f"internal error ({type(exc).__name__})"
            with self.db.transaction() as conn:
                if parsed is not None and authenticated:
                    conn.execute(
                        "INSERT INTO request_nonces (party_id, nonce, expires_at) VALUES (?, ?, ?) "
                        "ON CONFLICT DO NOTHING",
                        (parsed.party_id, parsed.nonce, parsed.timestamp + self.window),
                    )
                audit.append(
                    conn,
                    party=parsed.party_id.hex() if parsed is not None else "unknown",
                    action=parsed.action if parsed is not None else (action or "unknown"),
                    target=parsed.target if parsed is not None else "",
                    outcome=audit.REFUSED,
                    detail=detail,
                    now=at,
                )
            raise

    def verify(
        self,
        request: SignedRequest | bytes,
        *,
        body: bytes | None = None,
        body_digest: bytes | None = None,
        action: str | None = None,
        now: float | None = None,
    ) -> PartyRecord:
        """Check a request that changes nothing else (its nonce and audit entry are committed); return its party."""
        with self.accept(request, body=body, body_digest=body_digest, action=action, now=now) as accepted:
            return accepted.party
