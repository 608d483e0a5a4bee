"""Signed requests: the format, and the node's refusals (each named, each audited), across processes too."""

from __future__ import annotations

import hashlib
import multiprocessing
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from mesatee.core import canonical
from mesatee.errors import InvalidArgumentError, PolicyError, RequestError
from mesatee.node import audit
from mesatee.node.database import Database
from mesatee.node.requests import (
    DEFAULT_WINDOW,
    MAX_REQUEST_SIZE,
    RequestVerifier,
    SignedRequest,
    sign_request,
)
from mesatee.parties import Party

NOW = 1_800_000_000


@pytest.fixture(scope="module")
def alice() -> Party:
    return Party.generate()


@pytest.fixture(scope="module")
def mallory() -> Party:
    return Party.generate()


@pytest.fixture
def db(tmp_path: Path, alice: Party) -> Database:
    database = Database(tmp_path / "node.db")
    database.admit_party(alice.identity.signing_key, alice.identity.hpke_key, name="alice")
    return database


@pytest.fixture
def verifier(db: Database) -> RequestVerifier:
    return RequestVerifier(db, clock=lambda: NOW)


def _last(db: Database) -> audit.AuditEntry:
    return list(audit.entries(db.connection()))[-1]


def _refused(verifier: RequestVerifier, request: SignedRequest | bytes, reason: str, **kwargs: object) -> RequestError:
    with pytest.raises(RequestError) as exc:
        verifier.verify(request, **kwargs)  # type: ignore[arg-type]
    assert exc.value.reason == reason, exc.value
    assert exc.value.status == 91
    entry = _last(verifier.db)
    assert entry.outcome == "refused" and str(exc.value) in entry.detail
    audit.verify_audit_log(verifier.db.connection())
    return exc.value


# --------------------------------------------------------------------------- format


def test_the_signature_covers_the_label_and_the_hash_of_the_canonical_fields(alice: Party) -> None:
    request = sign_request(alice, "task.create", "t1", b"body", now=NOW, nonce=bytes(range(16)))
    fields = {
        "version": 1,
        "party_id": alice.party_id,
        "action": "task.create",
        "target": "t1",
        "body_digest": hashlib.sha256(b"body").digest(),
        "timestamp": NOW,
        "nonce": bytes(range(16)),
    }
    message = b"mesatee/request/v1" + hashlib.sha256(canonical.encode(fields)).digest()
    assert request.message() == message
    Ed25519PublicKey.from_public_bytes(alice.identity.signing_key).verify(request.signature, message)
    assert request.to_bytes() == canonical.encode(fields | {"signature": request.signature})
    assert SignedRequest.from_bytes(request.to_bytes()) == request


def test_requests_get_fresh_nonces_and_the_current_time(alice: Party) -> None:
    a, b = sign_request(alice, "task.create", "t"), sign_request(alice, "task.create", "t")
    assert a.nonce != b.nonce and len(a.nonce) == 16
    assert abs(a.timestamp - __import__("time").time()) < 5


@pytest.mark.parametrize(
    "change",
    [
        {"version": 2},
        {"version": True},
        {"extra": 1},
        {"action": "Task Create"},
        {"action": ""},
        {"target": "x" * 257},
        {"target": 5},
        {"party_id": b"short"},
        {"body_digest": bytes(31)},
        {"timestamp": -1},
        {"timestamp": 1.5},
        {"nonce": bytes(15)},
        {"nonce": bytes(65)},
        {"signature": bytes(63)},
        {"signature": b""},
    ],
)
def test_malformed_requests_are_refused(verifier: RequestVerifier, alice: Party, change: dict[str, object]) -> None:
    value = canonical.decode(sign_request(alice, "task.create", "t", now=NOW).to_bytes(), max_size=4096) | change
    _refused(verifier, canonical.encode(value), "malformed")
    assert _last(verifier.db).party == "unknown"


@pytest.mark.parametrize("missing", ["version", "party_id", "action", "target", "body_digest", "timestamp", "nonce"])
def test_a_missing_field_is_refused(verifier: RequestVerifier, alice: Party, missing: str) -> None:
    value = canonical.decode(sign_request(alice, "task.create", "t", now=NOW).to_bytes(), max_size=4096)
    del value[missing]
    _refused(verifier, canonical.encode(value), "malformed")


def test_truncated_non_canonical_and_oversized_encodings_are_refused(verifier: RequestVerifier, alice: Party) -> None:
    data = sign_request(alice, "task.create", "t", now=NOW).to_bytes()
    for cut in (0, 1, len(data) // 2, len(data) - 1):
        _refused(verifier, data[:cut], "malformed")
    _refused(verifier, data + b"\x00", "malformed")
    _refused(verifier, b"\x81\xa7version\xcc\x01", "malformed")  # 1 written as uint8
    with pytest.raises(RequestError, match="limit"):
        SignedRequest.from_bytes(b"\x00" * (MAX_REQUEST_SIZE + 1))
    _refused(verifier, b"\x00" * (MAX_REQUEST_SIZE + 1), "malformed")


def test_every_flipped_byte_is_refused(verifier: RequestVerifier, alice: Party) -> None:
    data = bytearray(sign_request(alice, "task.create", "t", now=NOW).to_bytes())
    for i in range(len(data)):
        flipped = bytearray(data)
        flipped[i] ^= 0x01
        with pytest.raises(RequestError):
            verifier.verify(bytes(flipped))
    audit.verify_audit_log(verifier.db.connection())


# --------------------------------------------------------------------------- the verifier's checks


def test_a_good_request_is_accepted_once_and_audited(verifier: RequestVerifier, alice: Party) -> None:
    request = sign_request(alice, "task.create", "t1", b"manifest", now=NOW - 10)
    party = verifier.verify(request.to_bytes(), body=b"manifest")
    assert party.party_id == alice.party_id and party.name == "alice"
    entry = _last(verifier.db)
    assert (entry.party, entry.action, entry.target, entry.outcome) == (
        alice.party_id.hex(),
        "task.create",
        "t1",
        "accepted",
    )
    _refused(verifier, request, "replayed", body=b"manifest")


def test_an_unsigned_request_is_refused(verifier: RequestVerifier, alice: Party) -> None:
    signed = sign_request(alice, "task.create", "t", now=NOW)
    unsigned = SignedRequest(**{**signed.__dict__, "signature": b""})
    assert b"signature" not in unsigned.to_bytes()
    _refused(verifier, unsigned.to_bytes(), "unsigned")


def test_a_request_signed_with_another_key_is_refused(verifier: RequestVerifier, alice: Party) -> None:
    forged = SignedRequest.create(Ed25519PrivateKey.generate(), alice.party_id, "task.create", "t", b"", now=NOW)
    _refused(verifier, forged, "signature")
    assert _last(verifier.db).party == alice.party_id.hex()


def test_a_changed_field_breaks_the_signature(verifier: RequestVerifier, alice: Party) -> None:
    request = sign_request(alice, "task.create", "t", now=NOW)
    for change in ({"action": "task.cancel"}, {"target": "u"}, {"timestamp": NOW + 1}, {"nonce": bytes(16)}):
        _refused(verifier, SignedRequest(**{**request.__dict__, **change}), "signature")


def test_unknown_and_revoked_parties_are_refused(verifier: RequestVerifier, alice: Party, mallory: Party) -> None:
    _refused(verifier, sign_request(mallory, "task.create", "t", now=NOW), "unknown-party")
    verifier.db.revoke_party(alice.party_id)
    _refused(verifier, sign_request(alice, "task.create", "t", now=NOW), "not-admitted")


def test_a_body_that_does_not_match_is_refused_and_its_nonce_spent(verifier: RequestVerifier, alice: Party) -> None:
    request = sign_request(alice, "dataset.upload", "d", b"the real body", now=NOW)
    _refused(verifier, request, "body", body=b"another body")
    _refused(verifier, request, "replayed", body=b"the real body")  # the nonce went with the refusal
    other = sign_request(alice, "dataset.upload", "d", b"streamed", now=NOW)
    assert verifier.verify(other, body_digest=hashlib.sha256(b"streamed").digest()).party_id == alice.party_id


@pytest.mark.parametrize("offset", [-DEFAULT_WINDOW - 1, DEFAULT_WINDOW + 1, -(10**6), 10**6])
def test_stale_requests_are_refused(verifier: RequestVerifier, alice: Party, offset: int) -> None:
    _refused(verifier, sign_request(alice, "task.create", "t", now=NOW + offset), "stale")


@pytest.mark.parametrize("offset", [-DEFAULT_WINDOW, DEFAULT_WINDOW, 0])
def test_the_window_is_inclusive(verifier: RequestVerifier, alice: Party, offset: int) -> None:
    verifier.verify(sign_request(alice, "task.create", "t", now=NOW + offset))


def test_the_window_is_configurable(db: Database, alice: Party) -> None:
    strict = RequestVerifier(db, window=5, clock=lambda: NOW)
    strict.verify(sign_request(alice, "task.create", "t", now=NOW - 5))
    _refused(strict, sign_request(alice, "task.create", "t", now=NOW - 6), "stale")
    for bad in (0, -1, 1.5, True):
        with pytest.raises(InvalidArgumentError):
            RequestVerifier(db, window=bad)  # type: ignore[arg-type]


def test_a_request_for_another_action_is_refused(verifier: RequestVerifier, alice: Party) -> None:
    _refused(verifier, sign_request(alice, "task.cancel", "t", now=NOW), "action", action="task.create")


def test_nonces_are_kept_for_the_window_then_purged(db: Database, alice: Party) -> None:
    clock = [NOW]
    verifier = RequestVerifier(db, clock=lambda: clock[0])
    request = sign_request(alice, "task.create", "t", now=NOW)
    verifier.verify(request)
    count = "SELECT count(*) FROM request_nonces"
    clock[0] = NOW + DEFAULT_WINDOW  # the request is still fresh: its nonce must still be known
    _refused(verifier, request, "replayed")
    clock[0] = NOW + DEFAULT_WINDOW + 1  # stale from now on, so its nonce can go
    _refused(verifier, request, "stale")
    verifier.verify(sign_request(alice, "task.create", "t", now=clock[0]))
    assert db.connection().execute(count).fetchone()[0] == 1  # the old one purged, the new one kept


def test_the_requests_change_commits_with_its_audit_entry(verifier: RequestVerifier, alice: Party) -> None:
    request = sign_request(alice, "dataset.delete", "d", now=NOW)
    with verifier.accept(request) as accepted:
        accepted.conn.execute("UPDATE parties SET name = 'changed' WHERE party_id = ?", (alice.party_id,))
    assert verifier.db.party(alice.party_id).name == "changed"
    assert _last(verifier.db).outcome == "accepted"


def test_a_refusal_by_the_handler_rolls_back_the_change_and_is_audited(verifier: RequestVerifier, alice: Party) -> None:
    request = sign_request(alice, "task.create", "t", now=NOW)
    with pytest.raises(PolicyError), verifier.accept(request) as accepted:
        accepted.conn.execute("UPDATE parties SET name = 'changed' WHERE party_id = ?", (alice.party_id,))
        raise PolicyError("task breaks the policy", rule="max_uses")
    assert verifier.db.party(alice.party_id).name == "alice"
    entry = _last(verifier.db)
    assert entry.outcome == "refused" and "task breaks the policy" in entry.detail
    _refused(verifier, request, "replayed")  # a signed request refused later cannot be replayed either


def test_internal_errors_are_audited_without_their_message(verifier: RequestVerifier, alice: Party) -> None:
    with pytest.raises(KeyError), verifier.accept(sign_request(alice, "task.create", "t", now=NOW)):
        raise KeyError("secret-ish detail")
    assert _last(verifier.db).detail == "internal error (KeyError)"


def test_accept_is_not_nested_in_another_transaction(verifier: RequestVerifier, alice: Party) -> None:
    with pytest.raises(InvalidArgumentError, match="own transaction"), verifier.db.transaction():
        verifier.verify(sign_request(alice, "task.create", "t", now=NOW))


def test_sign_request_takes_a_party() -> None:
    with pytest.raises(InvalidArgumentError):
        sign_request(Ed25519PrivateKey.generate(), "task.create", "t")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- two processes


def _replayer(path: str, data: bytes, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    verifier = RequestVerifier(Database(path), clock=lambda: NOW)
    outcomes = []
    for request in canonical.decode(data, max_size=len(data)):
        try:
            verifier.verify(request)
            outcomes.append("accepted")
        except RequestError as exc:
            outcomes.append(exc.reason)
    queue.put(outcomes)


def test_two_processes_share_the_nonces(db: Database, alice: Party) -> None:
    requests = [sign_request(alice, "task.create", f"t{i}", now=NOW).to_bytes() for i in range(30)]
    data = canonical.encode(requests)
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    workers = [ctx.Process(target=_replayer, args=(str(db.path), data, queue)) for _ in range(2)]
    for w in workers:
        w.start()
    outcomes = [queue.get(timeout=120) for _ in workers]
    for w in workers:
        w.join(timeout=60)
        assert w.exitcode == 0
    # each request was accepted by exactly one of the two processes, and refused as replayed by the other
    for a, b in zip(*outcomes, strict=True):
        assert sorted((a, b)) == ["accepted", "replayed"]
    head = audit.verify_audit_log(db.connection())
    assert head.entries == 60
