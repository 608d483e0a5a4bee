"""mesatee.core.hpke: RFC 9180 on the wire, purposes bound by info, every tampering refused.

A short independent RFC 9180 implementation below (HMAC, X25519, AES-GCM only)
is first checked against the RFC's own vectors, then used to show that the
module's ciphertexts are exactly ``enc ‖ ct`` of that suite in both directions.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import os

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from conftest import REPO
from mesatee.core import hpke
from mesatee.errors import CryptoError, InvalidArgumentError

VECTOR_FILE = REPO.parent / "shared" / "fixtures" / "hpke" / "rfc9180_x25519_base.json"

# --------------------------------------------------------------------------- reference RFC 9180

KEM_SUITE = b"KEM\x00\x20"


def _hpke_suite(aead_id: int) -> bytes:
    return b"HPKE" + (0x20).to_bytes(2, "big") + (1).to_bytes(2, "big") + aead_id.to_bytes(2, "big")


def _extract(suite: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:
    return hmac.new(salt, b"HPKE-v1" + suite + label + ikm, hashlib.sha256).digest()


def _expand(suite: bytes, prk: bytes, label: bytes, info: bytes, length: int) -> bytes:
    labeled = length.to_bytes(2, "big") + b"HPKE-v1" + suite + label + info
    out, block = b"", b""
    for counter in itertools.count(1):
        if len(out) >= length:
            return out[:length]
        block = hmac.new(prk, block + labeled + bytes([counter]), hashlib.sha256).digest()
        out += block
    raise AssertionError


def _derive_private(ikm: bytes) -> X25519PrivateKey:
    prk = _extract(KEM_SUITE, b"", b"dkp_prk", ikm)
    return X25519PrivateKey.from_private_bytes(_expand(KEM_SUITE, prk, b"sk", b"", 32))


def _raw(key: X25519PrivateKey | X25519PublicKey) -> bytes:
    if isinstance(key, X25519PrivateKey):
        return key.private_bytes_raw()
    return key.public_bytes_raw()


def _key_schedule(dh: bytes, enc: bytes, pk_r: bytes, info: bytes, aead_id: int) -> tuple[bytes, bytes, bytes]:
    eae_prk = _extract(KEM_SUITE, b"", b"eae_prk", dh)
    shared = _expand(KEM_SUITE, eae_prk, b"shared_secret", enc + pk_r, 32)
    suite = _hpke_suite(aead_id)
    context = b"\x00" + _extract(suite, b"", b"psk_id_hash", b"") + _extract(suite, b"", b"info_hash", info)
    secret = _extract(suite, shared, b"secret", b"")
    key = _expand(suite, secret, b"key", context, 16 if aead_id == 1 else 32)
    return shared, key, _expand(suite, secret, b"base_nonce", context, 12)


def ref_seal(
    pk_r: bytes, plaintext: bytes, info: bytes, *, ephemeral: X25519PrivateKey, aad: bytes = b"", aead_id: int = 2
) -> bytes:
    enc = _raw(ephemeral.public_key())
    dh = ephemeral.exchange(X25519PublicKey.from_public_bytes(pk_r))
    _, key, nonce = _key_schedule(dh, enc, pk_r, info, aead_id)
    return enc + AESGCM(key).encrypt(nonce, plaintext, aad)


def ref_open(sk_r: X25519PrivateKey, ciphertext: bytes, info: bytes, *, aad: bytes = b"", aead_id: int = 2) -> bytes:
    enc, ct = ciphertext[:32], ciphertext[32:]
    dh = sk_r.exchange(X25519PublicKey.from_public_bytes(enc))
    _, key, nonce = _key_schedule(dh, enc, _raw(sk_r.public_key()), info, aead_id)
    return AESGCM(key).decrypt(nonce, ct, aad)


def test_reference_reproduces_the_rfc_vector() -> None:
    vectors = json.loads(VECTOR_FILE.read_text())["vectors"]
    vector = next(v for v in vectors if v["aead_id"] == 1)  # AES-128-GCM: the AES one the RFC gives
    x = bytes.fromhex
    sk_e, sk_r = _derive_private(x(vector["ikmE"])), _derive_private(x(vector["ikmR"]))
    assert _raw(sk_e) == x(vector["skEm"]) and _raw(sk_r) == x(vector["skRm"])
    assert _raw(sk_r.public_key()) == x(vector["pkRm"])
    dh = sk_e.exchange(sk_r.public_key())
    shared, key, nonce = _key_schedule(dh, x(vector["enc"]), x(vector["pkRm"]), x(vector["info"]), 1)
    assert (shared, key, nonce) == (x(vector["shared_secret"]), x(vector["key"]), x(vector["base_nonce"]))
    first = next(e for e in vector["encryptions"] if e["sequence number"] == "0")
    sealed = ref_seal(
        x(vector["pkRm"]), x(first["pt"]), x(vector["info"]), ephemeral=sk_e, aad=x(first["aad"]), aead_id=1
    )
    assert sealed == x(vector["enc"]) + x(first["ct"])


# --------------------------------------------------------------------------- the module


@pytest.fixture
def recipient() -> X25519PrivateKey:
    return X25519PrivateKey.generate()


INFO = hpke.grant_info(bytes(range(32)), "input_1")


@pytest.mark.parametrize("size", [0, 1, 32, 1000, 70000])
def test_round_trip(recipient: X25519PrivateKey, size: int) -> None:
    plaintext = os.urandom(size)
    sealed = hpke.seal(_raw(recipient.public_key()), plaintext, INFO)
    assert len(sealed) == hpke.ENC_SIZE + size + hpke.TAG_SIZE
    assert hpke.open(recipient, sealed, INFO) == plaintext
    assert hpke.seal(recipient.public_key(), plaintext, INFO) != sealed  # a fresh ephemeral key each time


def test_wire_format_is_rfc9180_both_ways(recipient: X25519PrivateKey) -> None:
    pk_r = _raw(recipient.public_key())
    sealed = hpke.seal(pk_r, b"file key", INFO)
    assert ref_open(recipient, sealed, INFO) == b"file key"
    made_by_reference = ref_seal(pk_r, b"to the enclave", INFO, ephemeral=X25519PrivateKey.generate())
    assert hpke.open(recipient, made_by_reference, INFO) == b"to the enclave"


def test_tampering_anywhere_is_refused(recipient: X25519PrivateKey) -> None:
    sealed = hpke.seal(_raw(recipient.public_key()), b"0123456789abcdef", INFO)
    for i in range(len(sealed)):  # enc, ciphertext and tag
        changed = bytearray(sealed)
        changed[i] ^= 0x01
        with pytest.raises(CryptoError, match="did not open"):
            hpke.open(recipient, bytes(changed), INFO)
    for cut in (0, 1, 31, 32, 47, len(sealed) - 1):
        with pytest.raises(CryptoError, match="did not open"):
            hpke.open(recipient, sealed[:cut], INFO)
    with pytest.raises(CryptoError, match="did not open"):
        hpke.open(recipient, sealed + b"\0", INFO)
    with pytest.raises(CryptoError, match="did not open"):
        hpke.open(recipient, bytes(32) + sealed[32:], INFO)  # enc a low-order point


def test_other_info_and_wrong_key_are_refused(recipient: X25519PrivateKey) -> None:
    manifest_hash = bytes(range(32))
    sealed = hpke.seal(_raw(recipient.public_key()), b"key", hpke.grant_info(manifest_hash, "a"))
    others = [
        hpke.grant_info(manifest_hash, "b"),
        hpke.grant_info(bytes(32), "a"),
        hpke.output_key_info(manifest_hash, "a"),
        hpke.return_value_info(manifest_hash),
        b"",
    ]
    for info in others:
        with pytest.raises(CryptoError):
            hpke.open(recipient, sealed, info)
    with pytest.raises(CryptoError):
        hpke.open(X25519PrivateKey.generate(), sealed, hpke.grant_info(manifest_hash, "a"))
    assert hpke.open(recipient, sealed, hpke.grant_info(manifest_hash, "a")) == b"key"


def test_bad_arguments(recipient: X25519PrivateKey) -> None:
    with pytest.raises(InvalidArgumentError, match="32 bytes"):
        hpke.seal(bytes(31), b"x", INFO)
    with pytest.raises(InvalidArgumentError, match="not a usable"):
        hpke.seal(bytes(32), b"x", INFO)  # a low-order point: the shared secret would be zero
    with pytest.raises(InvalidArgumentError, match="X25519PrivateKey"):
        hpke.open(_raw(recipient), b"x" * 60, INFO)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        hpke.seal(recipient.public_key(), "text", INFO)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- labels


def test_labels_are_one_registry_of_distinct_prefix_free_strings() -> None:
    labels = list(hpke.LABELS.values())
    assert len(set(labels)) == len(labels) == 6
    for a, b in itertools.permutations(labels, 2):
        assert not b.startswith(a), (a, b)
    assert hpke.LABELS["grant"] == b"mesatee/grant/v1"
    assert hpke.LABELS["output-key"] == b"mesatee/output-key/v1"
    assert hpke.LABELS["return-value"] == b"mesatee/return-value/v1"
    assert hpke.LABELS["approval"] == b"mesatee/approval/v1"
    assert hpke.LABELS["receipt"] == b"mesatee/receipt/v1"
    assert hpke.LABELS["request"] == b"mesatee/request/v1"


def test_info_and_message_layouts() -> None:
    h = bytes(range(32))
    assert hpke.grant_info(h, "in") == b"mesatee/grant/v1" + h + b"\x02\x00in"
    assert hpke.output_key_info(h, "é") == b"mesatee/output-key/v1" + h + b"\x02\x00\xc3\xa9"
    assert hpke.return_value_info(h) == b"mesatee/return-value/v1" + h
    assert hpke.approval_message(h) == b"mesatee/approval/v1" + h
    receipt = b"\x80"
    assert hpke.receipt_message(receipt) == b"mesatee/receipt/v1" + hashlib.sha256(receipt).digest()
    long_slot = "s" * 300
    assert hpke.grant_info(h, long_slot)[48:50] == (300).to_bytes(2, "little")


def test_all_purposes_give_different_info_for_the_same_task_and_slot() -> None:
    h = os.urandom(32)
    made = [hpke.grant_info(h, "x"), hpke.output_key_info(h, "x"), hpke.return_value_info(h)]
    made += [hpke.approval_message(h), hpke.receipt_message(h)]
    assert len(set(made)) == len(made)


@pytest.mark.parametrize(
    "call",
    [
        lambda: hpke.grant_info(bytes(31), "a"),
        lambda: hpke.grant_info(bytes(32), ""),
        lambda: hpke.grant_info(bytes(32), b"a"),
        lambda: hpke.output_key_info(bytes(33), "a"),
        lambda: hpke.return_value_info("00" * 32),
        lambda: hpke.approval_message(bytes(16)),
        lambda: hpke.receipt_message("receipt"),
    ],
)
def test_builders_check_their_arguments(call) -> None:
    with pytest.raises(InvalidArgumentError):
        call()
