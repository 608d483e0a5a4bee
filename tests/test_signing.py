"""The enclave signature file, its config, the signing key and the signing CLI."""

from __future__ import annotations

import hashlib
import os
import stat
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mesatee.core.signing import (
    SIGNATURE_FILE_SIZE,
    EnclaveConfig,
    EnclaveSignature,
    load_or_create_signing_key,
    sign_image,
)
from mesatee.errors import EnclaveLoadError, InvalidArgumentError, Status

REPO = Path(__file__).resolve().parent.parent
CONFIG = EnclaveConfig(product_id=0x1234, security_version=0xBEEF, debug=True)


def public_bytes(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "enclave.so"
    path.write_bytes(b"\x7fELF" + bytes(range(256)) * 9000)  # > 2 MiB: several 1 MiB chunks
    return path


def test_sign_and_parse_round_trip(image: Path) -> None:
    key = Ed25519PrivateKey.generate()
    sig = sign_image(image, key, CONFIG)
    data = image.read_bytes()
    assert sig.mrenclave == hashlib.sha256(data).digest()
    assert sig.image_size == len(data)
    assert sig.signer_public_key == public_bytes(key)
    assert sig.mrsigner == hashlib.sha256(public_bytes(key)).digest()
    assert (sig.product_id, sig.security_version, sig.debug) == (0x1234, 0xBEEF, True)

    raw = sig.to_bytes()
    assert len(raw) == SIGNATURE_FILE_SIZE
    assert raw[:12] == b"MTSG" + struct.pack("<HBBHH", 1, 1, 0, 0x1234, 0xBEEF)
    assert raw[12:20] == struct.pack("<Q", len(data))
    assert raw[20:52] == sig.mrenclave and raw[52:84] == sig.signer_public_key
    key.public_key().verify(raw[84:], raw[:84])
    assert EnclaveSignature.from_bytes(raw) == sig
    assert EnclaveSignature.from_bytes(memoryview(raw)) == sig


def test_empty_image_and_release_flags(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    sig = sign_image(empty, Ed25519PrivateKey.generate(), EnclaveConfig(1, 1, False))
    assert sig.image_size == 0 and sig.mrenclave == hashlib.sha256(b"").digest()
    assert sig.to_bytes()[6] == 0
    assert EnclaveSignature.from_bytes(sig.to_bytes()) == sig


def test_every_single_byte_change_is_refused(image: Path) -> None:
    raw = sign_image(image, Ed25519PrivateKey.generate(), CONFIG).to_bytes()
    for offset in range(len(raw)):
        changed = bytearray(raw)
        changed[offset] ^= 0x01
        with pytest.raises(EnclaveLoadError) as info:
            EnclaveSignature.from_bytes(bytes(changed))
        assert info.value.status == Status.SIGNATURE_INVALID


@pytest.mark.parametrize("length", [0, 1, 84, 147, 149, 296])
def test_wrong_length_is_refused(image: Path, length: int) -> None:
    raw = sign_image(image, Ed25519PrivateKey.generate(), CONFIG).to_bytes()
    data = (raw * 2)[:length]
    with pytest.raises(EnclaveLoadError, match=f"{length} bytes, expected 148") as info:
        EnclaveSignature.from_bytes(data)
    assert info.value.status == Status.SIGNATURE_INVALID


@pytest.mark.parametrize(
    ("offset", "value", "match"),
    [(0, b"XTSG", "magic"), (4, b"\x02\x00", "version"), (6, b"\x02", "flag"), (7, b"\x01", "reserved")],
)
def test_defects_are_refused_even_when_signed(image: Path, offset: int, value: bytes, match: str) -> None:
    key = Ed25519PrivateKey.generate()
    signed = bytearray(sign_image(image, key, CONFIG).to_bytes()[:84])
    signed[offset : offset + len(value)] = value
    data = bytes(signed) + key.sign(bytes(signed))
    with pytest.raises(EnclaveLoadError, match=match) as info:
        EnclaveSignature.from_bytes(data)
    assert info.value.status == Status.SIGNATURE_INVALID


def test_signature_by_another_key_is_refused(image: Path) -> None:
    sig = sign_image(image, Ed25519PrivateKey.generate(), CONFIG)
    other = Ed25519PrivateKey.generate()
    forged = sig.signed_bytes()[:52] + public_bytes(other) + sig.signature
    with pytest.raises(EnclaveLoadError, match="does not verify"):
        EnclaveSignature.from_bytes(forged)


def test_signature_fields_are_validated() -> None:
    with pytest.raises(InvalidArgumentError, match="mrenclave"):
        EnclaveSignature(1, 1, False, 0, bytes(31), bytes(32), bytes(64))
    with pytest.raises(InvalidArgumentError, match="image_size"):
        EnclaveSignature(1, 1, False, -1, bytes(32), bytes(32), bytes(64))


# --------------------------------------------------------------------------- config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "enclave.toml"
    path.write_text(text)
    return path


def test_config_from_toml(tmp_path: Path) -> None:
    path = write(tmp_path, "# c\nproduct_id = 65535\nsecurity_version = 0\ndebug = true\n")
    assert EnclaveConfig.from_toml(path) == EnclaveConfig(65535, 0, True)


def test_repository_enclave_config() -> None:
    assert EnclaveConfig.from_toml(REPO / "enclave" / "enclave.toml") == EnclaveConfig(1, 1, False)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("product_id = 1\nsecurity_version = 1\ndebug = false\nsvn = 2\n", "unknown key.*svn"),
        ("product_id = 1\ndebug = false\n", "missing key.*security_version"),
        ("", "missing key.*debug, product_id, security_version"),
        (
            "product_id = 1\nversion = 1\ndebug = false\n",
            "unknown key.*version; missing key.*security_version",
        ),
        ("product_id = 65536\nsecurity_version = 1\ndebug = false\n", "product_id must be in 0..65535"),
        ("product_id = -1\nsecurity_version = 1\ndebug = false\n", "product_id must be in"),
        ("product_id = 1\nsecurity_version = '1'\ndebug = false\n", "security_version must be an integer"),
        ("product_id = true\nsecurity_version = 1\ndebug = false\n", "product_id must be an integer"),
        ("product_id = 1\nsecurity_version = 1\ndebug = 0\n", "debug must be true or false"),
        ("product_id = 1\nsecurity_version = 1.0\ndebug = false\n", "security_version must be an integer"),
        ("product_id = 1\ndebug = false\n[security_version]\n", "security_version must be an integer"),
        ("product_id = \n", "not valid TOML"),
    ],
)
def test_config_validation(tmp_path: Path, text: str, match: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(InvalidArgumentError, match=match) as info:
        EnclaveConfig.from_toml(path)
    assert str(path) in str(info.value)


# --------------------------------------------------------------------------- key


def test_key_created_with_mode_0600_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "signing.pem"
    key = load_or_create_signing_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    again = load_or_create_signing_key(str(path))
    assert public_bytes(again) == public_bytes(key)
    assert sorted(os.listdir(path.parent)) == ["signing.pem"]  # no temporary file left behind


def test_existing_key_of_another_type_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "p256.pem"
    path.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    with pytest.raises(InvalidArgumentError, match="not an Ed25519 key"):
        load_or_create_signing_key(path)
    path.write_bytes(b"garbage")
    with pytest.raises(InvalidArgumentError, match="not an unencrypted PEM private key"):
        load_or_create_signing_key(path)


# --------------------------------------------------------------------------- CLI


def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "python")}
    return subprocess.run(
        [sys.executable, "-m", "mesatee.core.signing", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )


def test_cli_sign_and_show(image: Path, tmp_path: Path) -> None:
    key_path = tmp_path / "signing.pem"
    config = REPO / "enclave" / "enclave.toml"
    done = cli("sign", "--image", image, "--config", config, "--key", key_path)
    assert done.returncode == 0, done.stderr
    sig_path = image.with_name(image.name + ".sig")
    sig = EnclaveSignature.from_bytes(sig_path.read_bytes())
    key = load_or_create_signing_key(key_path)
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert sig.signer_public_key == public_bytes(key)
    assert done.stdout.splitlines() == [
        f"mrenclave: {sig.mrenclave.hex()}",
        f"mrsigner: {sig.mrsigner.hex()}",
    ]
    assert sig.mrenclave == hashlib.sha256(image.read_bytes()).digest()

    out = tmp_path / "other.sig"
    again = cli("sign", "--image", image, "--config", config, "--key", key_path, "--out", out)
    assert again.returncode == 0, again.stderr
    assert EnclaveSignature.from_bytes(out.read_bytes()).mrsigner == sig.mrsigner  # the key was reused

    shown = cli("show", sig_path)
    assert shown.returncode == 0, shown.stderr
    assert f"mrenclave: {sig.mrenclave.hex()}" in shown.stdout
    assert f"mrsigner: {sig.mrsigner.hex()}" in shown.stdout
    assert "product_id: 1" in shown.stdout and "debug: false" in shown.stdout
    assert f"image_size: {image.stat().st_size}" in shown.stdout


def test_cli_errors_are_one_line(image: Path, tmp_path: Path) -> None:
    config = REPO / "enclave" / "enclave.toml"
    key = tmp_path / "k.pem"
    failures = [
        cli("sign", "--image", tmp_path / "missing.so", "--config", config, "--key", key),
        cli("sign", "--image", image, "--config", write(tmp_path, "debug = false\n"), "--key", key),
    ]
    tampered = tmp_path / "bad.sig"
    raw = sign_image(image, Ed25519PrivateKey.generate(), CONFIG).to_bytes()
    tampered.write_bytes(raw[:-1] + bytes([raw[-1] ^ 1]))
    failures.append(cli("show", tampered))
    failures.append(cli("show", tmp_path / "nothing.sig"))
    for done in failures:
        assert done.returncode != 0
        assert done.stdout == ""
        assert len(done.stderr.splitlines()) == 1 and done.stderr.startswith("error: "), done.stderr
    assert "missing.so" in failures[0].stderr
    assert "missing key(s)" in failures[1].stderr
    assert "bad.sig" in failures[2].stderr and "does not verify" in failures[2].stderr
