"""Seeded mutation fuzzing of everything the enclave parses: each input gets a typed error or a
result, never a crash (a crash would take this test process down with it)."""

from __future__ import annotations

import contextlib
import random
from pathlib import Path

import pytest

from mesatee import MesateeError
from mesatee.core import canonical
from task_host import prepare

TEACLAVE = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "teaclave"


def mutations(data: bytes, rng: random.Random, count: int):
    """``count`` changed copies of ``data``: bit flips, byte changes, truncations, insertions, duplications."""
    made = 0
    for candidate in _mutate(data, rng):
        if candidate != data:
            made += 1
            yield candidate
            if made == count:
                return


def _mutate(data: bytes, rng: random.Random):
    while True:
        kind = rng.randrange(6)
        at = rng.randrange(len(data) + 1)
        if kind == 0 and data:
            i = rng.randrange(len(data))
            yield data[:i] + bytes([data[i] ^ (1 << rng.randrange(8))]) + data[i + 1 :]
        elif kind == 1 and data:
            i = rng.randrange(len(data))
            yield data[:i] + bytes([rng.choice([0, 0x7F, 0x80, 0xC0, 0xCC, 0xDC, 0xDD, 0xDF, 0xFF])]) + data[i + 1 :]
        elif kind == 2:
            yield data[:at]
        elif kind == 3:
            yield data[:at] + rng.randbytes(rng.randrange(1, 9)) + data[at:]
        elif kind == 4:
            end = min(len(data), at + rng.randrange(1, 64))
            yield data[:end] + data[at:end] + data[end:]
        else:
            yield data[:at] + b"\xdd\xff\xff\xff\xf0" + data[at:]  # a huge array header


def test_invocations(task_world, tmp_path: Path) -> None:
    enclave, claims, (alice, bob, *_) = task_world
    task = prepare(
        tmp_path, claims, alice, "ordered_set_intersect",
        inputs={"input_data1": (alice, b"a\nb\nc\n"), "input_data2": (bob, b"b\nc\nd\n")},
        outputs={"output_result1": [alice], "output_result2": [bob]},
    )  # fmt: skip
    good = task.invocation()
    enclave.invoke(good)
    rng = random.Random(20261127)
    outcomes = {"refused": 0, "ran": 0}
    for bad in mutations(good, rng, 1500):
        try:
            enclave.invoke(bad)
            outcomes["ran"] += 1  # a mutation that left the task valid (e.g. in unchecked padding) still ran
        except MesateeError:
            outcomes["refused"] += 1
    assert outcomes["refused"] > 1400


def test_canonical_values_in_the_trusted_codec(probe) -> None:
    value = {"a": [1, -200, 70000, 2**40, -(2**40), 1.5, None, True, "é" * 40, b"x" * 300], "b": {"c": {"d": []}}}
    good = canonical.encode(value)
    rng = random.Random(7)
    for bad in mutations(good, rng, 3000):
        with contextlib.suppress(MesateeError):
            assert probe("msgpack_reencode", data=bad) == bad  # anything accepted is canonical


@pytest.mark.parametrize("op", ["file_decrypt", "manifest_hash"])
def test_files_and_manifests_in_trusted_code(probe, op: str) -> None:
    from mesatee.core import files

    key = bytes(range(32))
    good = (
        files.encrypt_bytes(bytes(range(256)) * 40, key, chunk_size=4096)
        if op == "file_decrypt"
        else canonical.encode({"version": 1, "task_id": bytes(16), "creator": bytes(32), "arguments": {"x": 1}})
    )
    rng = random.Random(11)
    for bad in mutations(good, rng, 1500):
        with contextlib.suppress(MesateeError):
            probe(op, key=key, file=bad) if op == "file_decrypt" else probe(op, data=bad)


def test_sealed_blobs_and_evidence(task_world) -> None:
    from mesatee.core.attestation import AttestationPolicy, parse_evidence, verify_evidence
    from mesatee.core.enclave import verify_evidence_native

    enclave = task_world.enclave
    blob, evidence = enclave.seal(b"fuzz me" * 10), enclave.evidence(b"n")
    root = parse_evidence(evidence).root_cert  # trust the real root, so mutations reach the deep checks
    policy = AttestationPolicy(mrenclave=enclave.identity.mrenclave, allow_software=True, trusted_roots=[root])
    verify_evidence_native(evidence, policy)
    rng = random.Random(3)
    for bad in mutations(blob, rng, 1000):
        with pytest.raises(MesateeError):
            enclave.unseal(bad)
    for bad in mutations(evidence, rng, 1000):
        for verify in (verify_evidence_native, verify_evidence):
            with pytest.raises(MesateeError):
                verify(bad, policy)
