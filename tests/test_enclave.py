"""Loading the enclave, its identity and long-term keys, and the software platform folder."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import stat
from pathlib import Path

import pytest

import mesatee
from mesatee import (
    EnclaveLoadError,
    FormatError,
    InvalidArgumentError,
    MesateeError,
    PlatformError,
    SealingError,
    Status,
)
from mesatee.core.enclave import DEFAULT_IMAGE
from mesatee.core.signing import EnclaveSignature

# --------------------------------------------------------------------------- identity and keys


def test_identity_is_the_measured_image(platform_dir: Path) -> None:
    signature = EnclaveSignature.from_bytes(Path(str(DEFAULT_IMAGE) + ".sig").read_bytes())
    with mesatee.Enclave(platform_dir=platform_dir) as enclave:
        identity = enclave.identity
    assert identity.mrenclave == hashlib.sha256(DEFAULT_IMAGE.read_bytes()).digest() == signature.mrenclave
    assert identity.mrsigner == signature.mrsigner
    assert (identity.product_id, identity.security_version, identity.debug) == (1, 1, False)
    assert identity.platform == "software"


def test_fresh_keys_without_state_same_keys_with_it(platform_dir: Path) -> None:
    with mesatee.Enclave(platform_dir=platform_dir) as a, mesatee.Enclave(platform_dir=platform_dir) as b:
        assert a.public_keys != b.public_keys
        state, keys = a.sealed_state, a.public_keys
        blob = a.seal(b"kept")
    with mesatee.Enclave(platform_dir=platform_dir, sealed_state=state) as again:
        assert again.public_keys == keys
        assert again.sealed_state == state
        assert again.unseal(blob) == b"kept"
    assert len(keys.hpke) == len(keys.signing) == 32


def test_state_file_written_private_and_reused(platform_dir: Path, tmp_path: Path) -> None:
    state_file = tmp_path / "enclave.state"
    with mesatee.Enclave(platform_dir=platform_dir, state_file=state_file) as first:
        keys = first.public_keys
    assert stat.S_IMODE(state_file.stat().st_mode) == 0o600
    with mesatee.Enclave(platform_dir=platform_dir, state_file=state_file) as second:
        assert second.public_keys == keys
    with pytest.raises(InvalidArgumentError):
        mesatee.Enclave(platform_dir=platform_dir, state_file=state_file, sealed_state=b"x")


def test_the_host_cannot_open_or_plant_the_enclave_state(platform_dir: Path) -> None:
    """The host may seal and unseal its own data through the enclave, never the enclave's keys."""
    with mesatee.Enclave(platform_dir=platform_dir) as enclave:
        state = enclave.sealed_state
        for aad in (b"", b"mesatee/enclave-state/v1", b"mesatee/enclave-state/v1\x00"):
            with pytest.raises(SealingError):
                enclave.unseal(state, aad)
        chosen = b"MTKS\x01" + bytes([0x11]) * 64  # keys the host would like the enclave to use
        forged = enclave.seal(chosen, b"mesatee/enclave-state/v1", policy="product")
    with pytest.raises(SealingError):
        mesatee.Enclave(platform_dir=platform_dir, sealed_state=forged)


def test_damaged_state_is_refused_never_replaced(platform_dir: Path, tmp_path: Path) -> None:
    with mesatee.Enclave(platform_dir=platform_dir) as e:
        state = e.sealed_state
    damaged = bytearray(state)
    damaged[-1] ^= 1
    with pytest.raises(SealingError):
        mesatee.Enclave(platform_dir=platform_dir, sealed_state=bytes(damaged))
    with pytest.raises(FormatError, match="enclave state"):
        mesatee.Enclave(platform_dir=platform_dir, sealed_state=state[:-1])
    with pytest.raises(SealingError):  # another platform's seal root
        mesatee.Enclave(platform_dir=tmp_path / "other", sealed_state=state)
    state_file = tmp_path / "state"
    state_file.write_bytes(bytes(damaged))
    with pytest.raises(SealingError):
        mesatee.Enclave(platform_dir=platform_dir, state_file=state_file)
    assert state_file.read_bytes() == bytes(damaged)  # left for the operator to inspect


def test_state_is_resealed_on_upgrade_and_rollback_cannot_open_it(make_image, platform_dir: Path) -> None:
    v1, v2 = make_image(security_version=1, variant=11), make_image(security_version=2, variant=12)
    with mesatee.Enclave(v1, platform_dir=platform_dir) as old:
        state, keys = old.sealed_state, old.public_keys
    with mesatee.Enclave(v2, platform_dir=platform_dir, sealed_state=state) as new:
        assert new.public_keys == keys
        upgraded = new.sealed_state
    assert upgraded != state and int.from_bytes(upgraded[6:8], "little") == 2
    with pytest.raises(SealingError) as info:
        mesatee.Enclave(v1, platform_dir=platform_dir, sealed_state=upgraded)
    assert info.value.status == Status.SEAL_VERSION


def test_closed_enclave_refuses_calls(platform_dir: Path) -> None:
    enclave = mesatee.Enclave(platform_dir=platform_dir)
    enclave.close()
    enclave.close()
    with pytest.raises(MesateeError, match="closed"):
        enclave.seal(b"x")


def test_evidence_nonce_bound(platform_dir: Path) -> None:
    with mesatee.Enclave(platform_dir=platform_dir) as enclave:
        assert enclave.evidence(b"n" * 64)
        with pytest.raises(InvalidArgumentError, match="64"):
            enclave.evidence(b"n" * 65)


# --------------------------------------------------------------------------- the loader


def test_flipped_image_byte_refused(make_image, platform_dir: Path) -> None:
    image = make_image(variant=21)
    data = bytearray(image.read_bytes())
    data[len(data) // 2] ^= 0x01
    image.write_bytes(bytes(data))
    with pytest.raises(EnclaveLoadError, match="modified after signing") as info:
        mesatee.Enclave(image, platform_dir=platform_dir)
    assert info.value.status == Status.IMAGE_MODIFIED


def test_signature_that_does_not_verify_refused(make_image, platform_dir: Path) -> None:
    image = make_image(variant=22)
    sig_path = image.with_name("enclave.so.sig")
    good = sig_path.read_bytes()
    for offset in (0, 8, 10, 20, 60, 100, 147):
        bad = bytearray(good)
        bad[offset] ^= 0x01
        sig_path.write_bytes(bytes(bad))
        with pytest.raises(EnclaveLoadError) as info:
            mesatee.Enclave(image, platform_dir=platform_dir)
        assert info.value.status == Status.SIGNATURE_INVALID, offset
    sig_path.write_bytes(good[:-1])
    with pytest.raises(EnclaveLoadError, match="expected 148"):
        mesatee.Enclave(image, platform_dir=platform_dir)
    sig_path.unlink()
    with pytest.raises(EnclaveLoadError, match="cannot open signature file"):
        mesatee.Enclave(image, platform_dir=platform_dir)


def test_signature_for_another_image_refused(make_image, platform_dir: Path) -> None:
    image, other = make_image(variant=23), make_image(variant=123)
    with pytest.raises(EnclaveLoadError, match="belongs to another image") as info:
        mesatee.Enclave(image, signature=other.with_name("enclave.so.sig"), platform_dir=platform_dir)
    assert info.value.status == Status.SIGNATURE_MISMATCH


def test_not_an_enclave_refused(platform_dir: Path, tmp_path: Path, signer_key) -> None:
    from mesatee.core.signing import EnclaveConfig, sign_image

    host_lib = next(DEFAULT_IMAGE.parent.glob("libmesatee_host*"))
    fake = tmp_path / "fake.so"
    fake.write_bytes(host_lib.read_bytes())
    fake.with_name("fake.so.sig").write_bytes(sign_image(fake, signer_key, EnclaveConfig(1, 1, False)).to_bytes())
    with pytest.raises(EnclaveLoadError, match="entry points missing") as info:
        mesatee.Enclave(fake, platform_dir=platform_dir)
    assert info.value.status == Status.IMAGE_LOAD
    with pytest.raises(EnclaveLoadError, match="cannot open enclave image"):
        mesatee.Enclave(tmp_path / "missing.so", signature=fake.with_name("fake.so.sig"), platform_dir=platform_dir)


# --------------------------------------------------------------------------- the platform folder


def test_platform_folder_created_private(platform_dir: Path) -> None:
    root = mesatee.platform_root_certificate(platform_dir)
    assert stat.S_IMODE(platform_dir.stat().st_mode) == 0o700
    names = {"seal_root.bin", "attestation_key.pem", "attestation_cert.der", "root_cert.der"}
    assert names <= {p.name for p in platform_dir.iterdir()}
    for name in names:
        assert stat.S_IMODE((platform_dir / name).stat().st_mode) == 0o600
    assert (platform_dir / "root_cert.der").read_bytes() == root
    assert len((platform_dir / "seal_root.bin").read_bytes()) == 32
    assert mesatee.platform_root_certificate(platform_dir) == root  # stable once created


def test_root_is_a_ca_certifying_the_attestation_key(platform_dir: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

    root = x509.load_der_x509_certificate(mesatee.platform_root_certificate(platform_dir))
    att = x509.load_der_x509_certificate((platform_dir / "attestation_cert.der").read_bytes())
    att.verify_directly_issued_by(root)
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not att.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert isinstance(att.public_key(), ec.EllipticCurvePublicKey) and att.public_key().curve.name == "secp256r1"


def test_platforms_are_independent(tmp_path: Path) -> None:
    assert mesatee.platform_root_certificate(tmp_path / "a") != mesatee.platform_root_certificate(tmp_path / "b")


def test_mesatee_home_is_the_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESATEE_HOME", str(tmp_path / "home"))
    root = mesatee.platform_root_certificate()
    assert (tmp_path / "home" / "root_cert.der").read_bytes() == root


def test_unsafe_permissions_refused(platform_dir: Path) -> None:
    mesatee.platform_root_certificate(platform_dir)
    platform_dir.chmod(0o755)
    with pytest.raises(PlatformError, match="accessible by other users"):
        mesatee.platform_root_certificate(platform_dir)
    platform_dir.chmod(0o700)
    (platform_dir / "seal_root.bin").chmod(0o644)
    with pytest.raises(PlatformError, match=r"seal_root\.bin is accessible"):
        mesatee.Enclave(platform_dir=platform_dir)


def test_damaged_platform_files_refused(platform_dir: Path) -> None:
    mesatee.platform_root_certificate(platform_dir)
    (platform_dir / "seal_root.bin").write_bytes(b"short")
    with pytest.raises(PlatformError, match="exactly 32 bytes"):
        mesatee.platform_root_certificate(platform_dir)


def _root_in_child(folder: str, queue: multiprocessing.Queue) -> None:
    queue.put(mesatee.platform_root_certificate(folder))


def test_concurrent_first_use_creates_one_platform(platform_dir: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    children = [ctx.Process(target=_root_in_child, args=(str(platform_dir), queue)) for _ in range(4)]
    for child in children:
        child.start()
    roots = {queue.get(timeout=60) for _ in children}
    for child in children:
        child.join(timeout=60)
    assert len(roots) == 1
    assert not [p for p in os.listdir(platform_dir) if p.endswith(".tmp")]
