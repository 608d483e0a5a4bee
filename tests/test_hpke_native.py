"""The enclave's HPKE (C++, src/enclave/hpke.cpp): RFC 9180's vectors, and interoperation both ways with
``cryptography``'s HPKE, through the trusted sources built as a plain library."""

from __future__ import annotations

import json
import os

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from conftest import REPO
from mesatee import CryptoError
from mesatee.core import hpke

VECTORS = json.loads((REPO.parent / "shared" / "fixtures" / "hpke" / "rfc9180_x25519_base.json").read_text())["vectors"]


def _raw_public(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _raw_private(key: X25519PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())


@pytest.mark.parametrize("vector", VECTORS, ids=[f"aead{v['aead_id']}" for v in VECTORS])
def test_rfc9180_vector(probe, vector: dict) -> None:
    assert (vector["mode"], vector["kem_id"], vector["kdf_id"]) == (0, 32, 1)
    first = next(e for e in vector["encryptions"] if e["sequence number"] == "0")
    x = bytes.fromhex
    got = probe(
        "hpke_vector",
        aead=vector["aead_id"],
        ikmE=x(vector["ikmE"]),
        ikmR=x(vector["ikmR"]),
        info=x(vector["info"]),
        aad=x(first["aad"]),
        pt=x(first["pt"]),
        exports=[{"context": x(e["exporter_context"]), "length": int(e["L"])} for e in vector["exports"]],
    )
    # key derivation, encapsulation and the key schedule
    assert got["skEm"] == x(vector["skEm"]) and got["skRm"] == x(vector["skRm"])
    assert got["pkRm"] == x(vector["pkRm"]) and got["enc"] == x(vector["enc"]) == x(vector["pkEm"])
    assert got["key"] == x(vector["key"])
    assert got["base_nonce"] == x(vector["base_nonce"]) == x(first["nonce"])
    assert got["exporter_secret"] == x(vector["exporter_secret"])
    # sequence-0 encryption, and the recipient opening it
    assert got["ct"] == x(first["ct"]) and got["pt"] == x(first["pt"])
    assert got["exports"] == [x(e["exported_value"]) for e in vector["exports"]]


def test_cryptography_to_enclave(probe) -> None:
    recipient = X25519PrivateKey.generate()
    info = hpke.grant_info(bytes(32), "input")
    for size in (0, 1, 32, 5000):
        plaintext = os.urandom(size)
        sealed = hpke.seal(_raw_public(recipient), plaintext, info)
        assert probe("hpke_open", private_key=_raw_private(recipient), ciphertext=sealed, info=info) == plaintext


def test_enclave_to_cryptography(probe) -> None:
    recipient = X25519PrivateKey.generate()
    info = hpke.return_value_info(bytes(range(32)))
    sealed = probe("hpke_seal", public_key=_raw_public(recipient), info=info, plaintext=b"to the party")
    assert hpke.open(recipient, sealed, info) == b"to the party"
    again = probe("hpke_seal", public_key=_raw_public(recipient), info=info, plaintext=b"to the party")
    assert sealed != again  # a fresh ephemeral key every time


def test_tampering_and_other_info_refused(probe) -> None:
    recipient = X25519PrivateKey.generate()
    info = hpke.grant_info(bytes(32), "a")
    sealed = hpke.seal(_raw_public(recipient), b"file key", info)
    private = _raw_private(recipient)
    cases = {
        "enc": bytes([sealed[0] ^ 1]) + sealed[1:],
        "ct": sealed[:40] + bytes([sealed[40] ^ 1]) + sealed[41:],
        "tag": sealed[:-1] + bytes([sealed[-1] ^ 1]),
        "short": sealed[:47],
    }
    for name, bad in cases.items():
        with pytest.raises(CryptoError, match="did not open"):
            probe("hpke_open", private_key=private, ciphertext=bad, info=info)
        assert name
    for other in (
        hpke.grant_info(bytes(32), "b"),
        hpke.grant_info(bytes([1]) + bytes(31), "a"),
        hpke.output_key_info(bytes(32), "a"),
    ):
        with pytest.raises(CryptoError, match="did not open"):
            probe("hpke_open", private_key=private, ciphertext=sealed, info=other)
    with pytest.raises(CryptoError):
        probe("hpke_open", private_key=_raw_private(X25519PrivateKey.generate()), ciphertext=sealed, info=info)
