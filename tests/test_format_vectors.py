"""The test vectors of docs/formats.md: recomputed from the spec alone, and accepted by the real code."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

import mesatee
from conftest import REPO
from mesatee.core.attestation import AttestationPolicy, verify_evidence
from mesatee.core.enclave import verify_evidence_native
from mesatee.core.signing import EnclaveConfig, EnclaveSignature, sign_image


def vector(name: str) -> dict:
    data = json.loads((REPO / "tests" / "vectors" / f"{name}.json").read_text())
    return {k: bytes.fromhex(v) if isinstance(v, str) and k != "description" else v for k, v in data.items()}


def test_signature_file_vector(tmp_path: Path) -> None:
    v = vector("signature_file")
    image = tmp_path / "image"
    image.write_bytes(v["image"])
    signer = Ed25519PrivateKey.from_private_bytes(v["signer_seed"])
    made = sign_image(image, signer, EnclaveConfig(v["product_id"], v["security_version"], v["debug"]))
    assert made.to_bytes() == v["signature_file"]  # Ed25519 is deterministic
    parsed = EnclaveSignature.from_bytes(v["signature_file"])
    assert (parsed.mrenclave, parsed.mrsigner) == (v["mrenclave"], v["mrsigner"])
    assert v["signature_file"][:4] == b"MTSG" and struct.unpack_from("<HH", v["signature_file"], 8) == (7, 3)


def test_sealed_blob_vector_from_the_spec() -> None:
    v = vector("sealed_blob")
    info = (
        b"mesatee/seal/v1"
        + bytes([v["policy"], v["debug"]])
        + v["mrsigner"]
        + struct.pack("<HH", v["product_id"], v["security_version"])
        + v["key_id"]
    )
    key = HKDF(hashes.SHA256(), 32, None, info).derive(v["seal_root"])
    assert key == v["seal_key"]
    header = b"MTSB" + bytes([1, v["policy"]]) + struct.pack("<H", v["security_version"]) + v["key_id"] + v["iv"]
    context = b"mesatee/host-data/v1\x00" + v["aad"]  # the purpose label, then the caller's AAD
    assert header + AESGCM(key).encrypt(v["iv"], v["plaintext"], header + context) == v["blob"]


def test_sealed_blob_vector_opens_in_the_enclave(make_image, platform_dir: Path) -> None:
    """A platform with the vector's seal root and an enclave of the vector's product open the blob."""
    v = vector("sealed_blob")
    mesatee.platform_root_certificate(platform_dir)  # create the folder, then plant the known root
    (platform_dir / "seal_root.bin").write_bytes(v["seal_root"])
    signer = Ed25519PrivateKey.from_private_bytes(v["signer_seed"])
    image = make_image(key=signer, product_id=v["product_id"], security_version=v["security_version"], variant=41)
    with mesatee.Enclave(image, platform_dir=platform_dir) as enclave:
        assert enclave.identity.mrsigner == v["mrsigner"]
        assert enclave.unseal(v["blob"], v["aad"]) == v["plaintext"]


@pytest.mark.parametrize("verify", [verify_evidence, verify_evidence_native], ids=["python", "native"])
def test_evidence_vector(verify) -> None:
    v = vector("evidence")
    policy = AttestationPolicy(
        mrenclave=v["mrenclave"], allow_software=True, trusted_roots=[v["root_cert"]], min_security_version=1
    )
    claims = verify(v["evidence"], policy, nonce=v["nonce"])
    assert claims.hpke_public_key == v["hpke_public_key"]
    assert claims.signing_public_key == v["signing_public_key"]
    assert (claims.mrsigner, claims.product_id, claims.security_version) == (v["mrsigner"], 1, 1)
    digest = hashlib.sha256(v["evidence"][8 : 8 + 64 + 1 + len(v["nonce"])]).digest()
    report = v["evidence"][8 + 65 + len(v["nonce"]) + 4 :][:140]
    assert report[76:] == digest + bytes(32)  # report data = SHA-256(claims) ‖ 0^32
