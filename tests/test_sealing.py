"""Sealing inside the enclave: round trips, policies, the version rule, and every tampering refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import mesatee
from mesatee import FormatError, InvalidArgumentError, SealingError, Status

POLICIES = ["unique", "product"]


@pytest.fixture(scope="module")
def enclave(tmp_path_factory: pytest.TempPathFactory) -> mesatee.Enclave:
    with mesatee.Enclave(platform_dir=tmp_path_factory.mktemp("seal") / "platform") as e:
        yield e


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("size", [0, 1, 4096, 64 << 20])
def test_round_trip(enclave: mesatee.Enclave, policy: str, size: int) -> None:
    data = os.urandom(size)
    blob = enclave.seal(data, b"context", policy=policy)
    assert len(blob) == size + 68
    assert blob[:4] == b"MTSB" and blob[5] == {"unique": 1, "product": 2}[policy]
    assert size < 16 or data[:16] not in blob
    assert enclave.unseal(blob, b"context") == data


def test_fresh_key_and_iv_every_time(enclave: mesatee.Enclave) -> None:
    a, b = enclave.seal(b"same"), enclave.seal(b"same")
    assert a[8:52] != b[8:52] and a != b


def test_wrong_aad_refused(enclave: mesatee.Enclave) -> None:
    blob = enclave.seal(b"payload", b"aad-1")
    for aad in (b"aad-2", b"", b"aad-1\x00"):
        with pytest.raises(SealingError) as info:
            enclave.unseal(blob, aad)
        assert info.value.status == Status.UNSEAL_FAILED


@pytest.mark.parametrize("policy", POLICIES)
def test_every_single_byte_change_refused(enclave: mesatee.Enclave, policy: str) -> None:
    blob = enclave.seal(b"sixteen byte msg", b"aad", policy=policy)
    for offset in range(len(blob)):
        for flip in (0x01, 0x80):
            changed = bytearray(blob)
            changed[offset] ^= flip
            with pytest.raises((SealingError, FormatError)):
                enclave.unseal(bytes(changed), b"aad")


def test_truncated_and_extended_refused(enclave: mesatee.Enclave) -> None:
    blob = enclave.seal(b"some data", b"")
    for size in range(len(blob)):
        with pytest.raises((SealingError, FormatError)):
            enclave.unseal(blob[:size])
    with pytest.raises(SealingError):
        enclave.unseal(blob + b"\x00")


def test_malformed_headers_say_what(enclave: mesatee.Enclave) -> None:
    blob = enclave.seal(b"x")
    with pytest.raises(FormatError, match="bad magic"):
        enclave.unseal(b"XXXX" + blob[4:])
    with pytest.raises(FormatError, match="unsupported version 9"):
        enclave.unseal(blob[:4] + b"\x09" + blob[5:])
    with pytest.raises(FormatError, match="unknown policy 3"):
        enclave.unseal(blob[:5] + b"\x03" + blob[6:])
    with pytest.raises(FormatError, match="truncated"):
        enclave.unseal(blob[:60])


def test_unknown_policy_refused(enclave: mesatee.Enclave) -> None:
    with pytest.raises(InvalidArgumentError):
        enclave.seal(b"x", policy="everyone")  # type: ignore[arg-type]


def test_unique_blob_refused_by_another_image_product_blob_opens(make_image, platform_dir: Path) -> None:
    first, second = make_image(variant=1), make_image(variant=2)
    with (
        mesatee.Enclave(first, platform_dir=platform_dir) as a,
        mesatee.Enclave(second, platform_dir=platform_dir) as b,
    ):
        assert a.identity.mrenclave != b.identity.mrenclave
        assert a.identity.mrsigner == b.identity.mrsigner
        unique, product = a.seal(b"u", policy="unique"), a.seal(b"p", policy="product")
        with pytest.raises(SealingError):
            b.unseal(unique)
        assert b.unseal(product) == b"p"
        assert a.unseal(unique) == b"u"


def test_product_blob_refused_by_another_product_or_signer(make_image, platform_dir: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    base = make_image()
    other_product = make_image(product_id=2, variant=3)
    other_signer = make_image(key=Ed25519PrivateKey.generate(), variant=4)
    debug_build = make_image(debug=True, variant=5)
    with mesatee.Enclave(base, platform_dir=platform_dir) as a:
        blob = a.seal(b"p", policy="product")
    for image in (other_product, other_signer, debug_build):
        with mesatee.Enclave(image, platform_dir=platform_dir) as e, pytest.raises(SealingError):
            e.unseal(blob)


def test_security_version_rule(make_image, platform_dir: Path) -> None:
    v1, v2 = make_image(security_version=1, variant=6), make_image(security_version=2, variant=7)
    with mesatee.Enclave(v1, platform_dir=platform_dir) as old, mesatee.Enclave(v2, platform_dir=platform_dir) as new:
        from_old = old.seal(b"old data", policy="product")
        from_new = new.seal(b"new data", policy="product")
        assert new.unseal(from_old) == b"old data"  # an upgrade opens older blobs
        with pytest.raises(SealingError) as info:
            old.unseal(from_new)  # a rollback never opens newer ones
        assert info.value.status == Status.SEAL_VERSION
        assert "security version 2" in str(info.value)


def test_blob_from_another_platform_refused(tmp_path: Path) -> None:
    with mesatee.Enclave(platform_dir=tmp_path / "a") as a, mesatee.Enclave(platform_dir=tmp_path / "b") as b:
        assert a.identity == b.identity
        blob = a.seal(b"data")
        with pytest.raises(SealingError):
            b.unseal(blob)


def test_threads_share_one_enclave(enclave: mesatee.Enclave) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def work(i: int) -> bool:
        data = os.urandom(i * 37)
        return all(enclave.unseal(enclave.seal(data, b"%d" % i), b"%d" % i) == data for _ in range(50))

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(work, range(64)))


def test_enclave_calls_release_the_gil(enclave: mesatee.Enclave) -> None:
    """While one thread is inside a long enclave call, another thread runs Python code."""
    import threading
    import time

    from mesatee._bindings import ffi, lib

    data = os.urandom(64 << 20)
    out = ffi.new("uint8_t[]", len(data) + 68)
    out_size = ffi.new("size_t*")
    inside: list[tuple[float, float]] = []
    ticks: list[float] = []
    stop = threading.Event()

    def ticker() -> None:
        while not stop.is_set():
            ticks.append(time.perf_counter())

    thread = threading.Thread(target=ticker)
    thread.start()
    try:
        for _ in range(3):
            start = time.perf_counter()
            status = lib.mesatee_enclave_seal(
                enclave._handle, lib.MESATEE_SEAL_PRODUCT, data, len(data), b"", 0, out, len(data) + 68, out_size
            )
            inside.append((start, time.perf_counter()))
            assert status == 0
    finally:
        stop.set()
        thread.join()
    # Had the call held the GIL, no tick could fall inside it.
    assert any(s + (e - s) * 0.1 < t < e - (e - s) * 0.1 for s, e in inside for t in ticks)
