"""The task protocol's building blocks: HPKE inside the enclave, encrypted files in Python and in C++.

The C++ figures time loops inside the trusted code itself (tests/native/probe.cpp,
built with CMake on first use), so no Python call overhead is in them.
"""

from __future__ import annotations

import os
import statistics
import sys
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

import harness
from mesatee.core import files

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from native.probe import Probe, build_probe

MIB = 1 << 20


def _probe() -> Probe:
    return build_probe()


def _native_ns_per_op(probe: Probe, what: str, iterations: int, data: bytes, repeats: int) -> float:
    """Median ns per operation of a loop run inside the trusted code."""
    probe("bench", what=what, iterations=1, data=data)  # warm-up
    return statistics.median(
        probe("bench", what=what, iterations=iterations, data=data) / iterations for _ in range(repeats)
    )


def run(config: harness.Config) -> harness.Report:
    report = harness.Report()
    probe = _probe()
    repeats = config.repeats

    # HPKE open (one X25519 and the key schedule) against the X25519 it contains.
    n = config.pick(2000, 50)
    hpke_ns = _native_ns_per_op(probe, "hpke_open", n, b"k" * 32, repeats)
    x25519_ns = _native_ns_per_op(probe, "x25519", n, b"k" * 32, repeats)
    report.figures.append(
        harness.Figure(
            id="protocol.hpke_open", name="HPKE open in the enclave (C++)", unit="ops/s", value=1e9 / hpke_ns,
            baseline_name="X25519 in the same libcrypto (C++)", baseline_value=1e9 / x25519_ns,
            goal=harness.Goal(ratio_at_least=0.8),
        )
    )  # fmt: skip

    # Encrypted files: Python (for parties) and C++ (in the enclave), beside single-shot AES-GCM.
    size = config.pick(16 * MIB, MIB)
    data = os.urandom(size)
    key = os.urandom(32)
    aead = AESGCM(key)
    encrypted = files.encrypt_bytes(data, key)
    nonce = os.urandom(12)
    sealed = aead.encrypt(nonce, data, None)
    batch = config.pick(3, 1)
    t = harness.compare(
        [
            harness.Candidate("py_encrypt", files.encrypt_bytes, batch, (data, key)),
            harness.Candidate("py_decrypt", files.decrypt_bytes, batch, (encrypted, key)),
            harness.Candidate("aesgcm_encrypt", aead.encrypt, batch, (nonce, data, None)),
            harness.Candidate("aesgcm_decrypt", aead.decrypt, batch, (nonce, sealed, None)),
        ],
        config,
    )
    rate = {name: timing.per_second(size) / 1e6 for name, timing in t.items()}
    for direction in ("encrypt", "decrypt"):
        report.figures.append(
            harness.Figure(
                id=f"protocol.file_{direction}.python", name=f"file {direction} (Python, {size // MIB} MiB)",
                unit="MB/s", value=rate[f"py_{direction}"],
                baseline_name=f"cryptography AESGCM {direction}", baseline_value=rate[f"aesgcm_{direction}"],
                goal=harness.Goal(ratio_at_least=0.85),
            )
        )  # fmt: skip
    loops = config.pick(4, 1)
    cpp = {what: size * 1e3 / _native_ns_per_op(probe, what, loops, data, repeats)
           for what in ("file_encrypt", "file_decrypt", "aes_gcm_encrypt")}  # fmt: skip
    for direction in ("encrypt", "decrypt"):
        report.figures.append(
            harness.Figure(
                id=f"protocol.file_{direction}.cpp", name=f"file {direction} (C++, {size // MIB} MiB)", unit="MB/s",
                value=cpp[f"file_{direction}"], baseline_name=f"cryptography AESGCM {direction}",
                baseline_value=rate[f"aesgcm_{direction}"], goal=harness.Goal(ratio_at_least=0.85),
            )
        )  # fmt: skip
    report.figures.append(
        harness.Figure(
            id="protocol.file_encrypt.cpp.libcrypto", name=f"file encrypt (C++, {size // MIB} MiB)", unit="MB/s",
            value=cpp["file_encrypt"], baseline_name="single-shot AES-GCM, same libcrypto (C++)",
            baseline_value=cpp["aes_gcm_encrypt"],
        )
    )  # fmt: skip
    return report


def run_invoke(config: harness.Config) -> harness.Report:
    """A whole 2-party echo task (the creator, and the function's owner) and its parts, median latency."""
    import tempfile
    import time

    import mesatee
    from mesatee.core.attestation import AttestationPolicy
    from mesatee.core.manifest import EnclaveRequirement, FunctionRef, Manifest, TaskResult, encode_invocation
    from mesatee.parties import Party

    report = harness.Report()
    with (
        tempfile.TemporaryDirectory(prefix="mesatee-bench-") as folder,
        mesatee.Enclave(platform_dir=folder) as enclave,
    ):
        alice, bob = Party.generate(), Party.generate()
        policy = AttestationPolicy(mrenclave=enclave.identity.mrenclave, allow_software=True,
                                   trusted_roots=[mesatee.platform_root_certificate(folder)])  # fmt: skip
        claims = alice.verify_enclave(enclave.evidence(b"n"), policy, nonce=b"n")
        manifest = Manifest.create(
            creator=alice.identity, function=FunctionRef("echo", 1, bob.party_id),
            enclaves=[EnclaveRequirement(mrenclave=claims.mrenclave)], parties=[alice.identity, bob.identity],
            arguments={"message": "Hello Teaclave!"},
        )  # fmt: skip
        manifest_bytes = manifest.to_bytes()
        approvals = {p.party_id: p.approve(manifest) for p in (alice, bob)}
        now = int(time.time())

        def encode() -> bytes:
            return encode_invocation(manifest_bytes, approvals, {}, {}, now)

        invocation = encode()
        result_bytes = enclave.invoke(invocation)

        def open_results() -> None:
            result = TaskResult.from_bytes(result_bytes)
            for party in (alice, bob):
                party.open_result(result, manifest, claims)

        def whole() -> None:
            result = TaskResult.from_bytes(enclave.invoke(encode()))
            for party in (alice, bob):
                party.open_result(result, manifest, claims)

        batch = config.pick(50, 5)
        t = harness.compare(
            [
                harness.Candidate("whole", whole, batch),
                harness.Candidate("encode", encode, batch * 10),
                harness.Candidate("invoke", enclave.invoke, batch, (invocation,)),
                harness.Candidate("open", open_results, batch),
                harness.Candidate("ping", enclave.ping, batch * 100),
            ],
            config,
        )
    us = {name: timing.median_ns / 1e3 for name, timing in t.items()}
    report.figures.append(
        harness.Figure(
            id="invoke.echo", name="2-party echo task, end to end", unit="us/task", value=us["invoke"],
            baseline_name="a no-op enclave call", baseline_value=us["ping"], goal=harness.Goal(value_below=2000),
        )
    )  # fmt: skip
    report.notes.append(
        f"2-party echo task: the enclave's invoke {us['invoke']:.0f} us (parse, 2 approvals, 2 return values "
        f"sealed, receipt signed); with the host encoding the invocation ({us['encode']:.0f} us) and both parties "
        f"verifying and opening the result ({us['open']:.0f} us) the whole round is {us['whole']:.0f} us."
    )
    return report


BENCHMARKS = {"protocol": run, "invoke": run_invoke}
