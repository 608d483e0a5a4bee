"""Sealing throughput: enclave.seal then enclave.unseal, beside AES-256-GCM encrypt then decrypt.

Every candidate does the same work per operation: encrypt ``size`` bytes
under a fresh random 12-byte IV, then decrypt and authenticate them. The rate
is plaintext MB (10^6 bytes) per second of such round trips.
"""

from __future__ import annotations

import os
import tempfile

from cryptography.hazmat.backends.openssl import backend as cryptography_backend
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

import harness
import libcrypto
import mesatee

KIB = 1024
MIB = 1024 * KIB


def _enclave_op(enclave: mesatee.Enclave, data: bytes):
    seal, unseal = enclave.seal, enclave.unseal

    def op() -> None:
        unseal(seal(data))

    return op


def _cryptography_op(data: bytes):
    aead = AESGCM(AESGCM.generate_key(bit_length=256))
    encrypt, decrypt, urandom = aead.encrypt, aead.decrypt, os.urandom

    def op() -> None:
        nonce = urandom(12)
        decrypt(nonce, encrypt(nonce, data, None), None)

    return op


def _libcrypto_op(data: bytes):
    aead = libcrypto.AesGcm(os.urandom(32), len(data))
    encrypt, decrypt, urandom = aead.encrypt, aead.decrypt, os.urandom

    def op() -> None:
        iv = urandom(12)
        if not decrypt(iv, encrypt(iv, data)):
            raise RuntimeError("libcrypto AES-GCM: the tag did not verify")

    return op


def _check(enclave: mesatee.Enclave, data: bytes) -> None:
    """The candidates really round-trip (a benchmark of a broken path measures nothing)."""
    if enclave.unseal(enclave.seal(data)) != data:
        raise RuntimeError("enclave seal/unseal did not round-trip")
    aead = libcrypto.AesGcm(os.urandom(32), len(data))
    iv = os.urandom(12)
    n = aead.encrypt(iv, data)
    if not aead.decrypt(iv, n) or aead.plaintext(n) != data:
        raise RuntimeError("libcrypto AES-GCM did not round-trip")
    reference = AESGCM(aead._key).encrypt(iv, data, None)
    if aead.ciphertext(n) != reference:
        raise RuntimeError("libcrypto AES-GCM disagrees with cryptography's")


def run(config: harness.Config) -> harness.Report:
    report = harness.Report()
    with (
        tempfile.TemporaryDirectory(prefix="mesatee-bench-") as platform_dir,
        mesatee.Enclave(platform_dir=platform_dir) as enclave,
    ):
        # 1 MiB: the enclave beside cryptography's AESGCM, and beside the system libcrypto (informative).
        data = os.urandom(MIB)
        _check(enclave, data)
        batch = config.pick(30, 3)
        t = harness.compare(
            [
                harness.Candidate("enclave", _enclave_op(enclave, data), batch),
                harness.Candidate("cryptography", _cryptography_op(data), batch),
                harness.Candidate("libcrypto", _libcrypto_op(data), batch),
            ],
            config,
        )
        mbps = {name: timing.per_second(MIB) / 1e6 for name, timing in t.items()}
        samples = {name: list(timing.samples_ns) for name, timing in t.items()}
        report.figures.append(
            harness.Figure(
                id="sealing.1MiB",
                name="seal+unseal 1 MiB",
                unit="MB/s",
                value=mbps["enclave"],
                baseline_name="cryptography AESGCM enc+dec",
                baseline_value=mbps["cryptography"],
                goal=harness.Goal(ratio_at_least=0.85),
                samples={k: samples[k] for k in ("enclave", "cryptography")},
            )
        )
        report.figures.append(
            harness.Figure(
                id="sealing.1MiB.libcrypto",
                name="seal+unseal 1 MiB",
                unit="MB/s",
                value=mbps["enclave"],
                baseline_name="system libcrypto AES-GCM enc+dec",
                baseline_value=mbps["libcrypto"],
                samples={k: samples[k] for k in ("enclave", "libcrypto")},
            )
        )

        # 4 KiB: small messages, where per-call costs (boundary, key derivation, allocation) show.
        data = os.urandom(4 * KIB)
        _check(enclave, data)
        batch = config.pick(2000, 200)
        t = harness.compare(
            [
                harness.Candidate("enclave", _enclave_op(enclave, data), batch),
                harness.Candidate("cryptography", _cryptography_op(data), batch),
            ],
            config,
        )
        report.figures.append(
            harness.Figure(
                id="sealing.4KiB",
                name="seal+unseal 4 KiB",
                unit="MB/s",
                value=t["enclave"].per_second(4 * KIB) / 1e6,
                baseline_name="cryptography AESGCM enc+dec",
                baseline_value=t["cryptography"].per_second(4 * KIB) / 1e6,
                goal=harness.Goal(ratio_at_least=0.6),
                samples={name: list(timing.samples_ns) for name, timing in t.items()},
            )
        )

    report.notes.append(
        "AES-GCM libraries: `cryptography` bundles its own OpenSSL "
        f"({cryptography_backend.openssl_version_text()}); the enclave links the system libcrypto "
        f"({libcrypto.version()}, {libcrypto.LIBRARY}), whose AES-GCM may be much slower on this CPU. "
        f"Measured here at 1 MiB: system libcrypto {mbps['libcrypto']:,.0f} MB/s vs "
        f"cryptography {mbps['cryptography']:,.0f} MB/s "
        f"({mbps['libcrypto'] / mbps['cryptography']:.2f}x: the ceiling of the 1 MiB ratio while the enclave uses "
        "this libcrypto); the enclave reaches "
        f"{mbps['enclave'] / mbps['libcrypto']:.2f}x of its own library."
    )
    return report


BENCHMARKS = {"sealing": run}
