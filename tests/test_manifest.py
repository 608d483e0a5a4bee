"""Manifests, invocations, receipts and results: canonical, strict, and checked against the task."""

from __future__ import annotations

import copy
import hashlib
import os
import time
from collections.abc import Callable
from typing import Any

import pytest

from mesatee.core import canonical, files, hpke
from mesatee.core.manifest import (
    EnclaveMeasurement,
    EnclaveRequirement,
    FunctionRef,
    InputSlot,
    Manifest,
    OutputFile,
    OutputSlot,
    ParticipantKeys,
    Receipt,
    TaskResult,
    encode_invocation,
    verify_approval,
)
from mesatee.errors import AttestationError, CryptoError, FormatError, InvalidArgumentError, Status
from mesatee.parties import Party
from protocol_enclave import FakeEnclave

ALICE, BOB, CAROL, DAVE = (Party.generate() for _ in range(4))
DATASET_A, DATASET_B = hashlib.sha256(b"a").digest(), hashlib.sha256(b"b").digest()
MRENCLAVE = bytes(range(0x10, 0x30))


def make_manifest(**overrides: Any) -> Manifest:
    options: dict[str, Any] = dict(
        creator=CAROL.identity,
        function=FunctionRef("ordered_set_intersect", 1),
        enclaves=[EnclaveRequirement(mrenclave=MRENCLAVE)],
        parties=[ALICE.identity, BOB.identity],
        inputs={
            "input_data1": InputSlot(ALICE.party_id, DATASET_A),
            "input_data2": InputSlot(BOB.party_id, DATASET_B, "teaclave-aes-gcm-128"),
        },
        outputs={"output_result1": [BOB.identity, ALICE.party_id], "output_result2": [BOB.party_id]},
        arguments={"order": "ascending", "limits": [1, 2.5, None, b"\x00"]},
        expires_at=2_000_000_000,
    )
    options.update(overrides)
    return Manifest.create(**options)


MANIFEST = make_manifest()


def raw() -> dict[str, Any]:
    """The decoded encoding of MANIFEST, to break one rule at a time."""
    return copy.deepcopy(canonical.decode(MANIFEST.to_bytes(), max_size=1 << 20))


# --------------------------------------------------------------------------- encoding


def test_encoding_is_the_spec_table() -> None:
    def participant(party: Party) -> dict[str, bytes]:
        return {"signing_key": party.identity.signing_key, "hpke_key": party.identity.hpke_key}

    expected = {
        "version": 1,
        "task_id": MANIFEST.task_id,
        "creator": CAROL.party_id,
        "function": {"name": "ordered_set_intersect", "version": 1, "owner": None},
        "arguments": {"order": "ascending", "limits": [1, 2.5, None, b"\x00"]},
        "inputs": {
            "input_data1": {"owner": ALICE.party_id, "dataset_id": DATASET_A, "format": "mesatee-v1"},
            "input_data2": {"owner": BOB.party_id, "dataset_id": DATASET_B, "format": "teaclave-aes-gcm-128"},
        },
        "outputs": {
            "output_result1": {"owners": sorted([ALICE.party_id, BOB.party_id])},
            "output_result2": {"owners": [BOB.party_id]},
        },
        "participants": {p.party_id.hex(): participant(p) for p in (ALICE, BOB, CAROL)},
        "enclaves": [{"mrenclave": MRENCLAVE}],
        "expires_at": 2_000_000_000,
    }
    assert MANIFEST.to_bytes() == canonical.encode(expected)
    assert MANIFEST.hash == hashlib.sha256(MANIFEST.to_bytes()).digest()
    assert len(MANIFEST.task_id) == 16


def test_round_trip_and_stable_hash() -> None:
    data = MANIFEST.to_bytes()
    parsed = Manifest.from_bytes(data)
    assert parsed == MANIFEST and parsed.hash == MANIFEST.hash and parsed.to_bytes() == data
    assert hash(parsed) == hash(MANIFEST)
    assert Manifest.from_bytes(bytearray(data)).hash == MANIFEST.hash
    rebuilt = Manifest(
        task_id=MANIFEST.task_id,
        creator=MANIFEST.creator,
        function=MANIFEST.function,
        arguments={"limits": (1, 2.5, None, b"\x00"), "order": "ascending"},
        inputs=dict(reversed(list(MANIFEST.inputs.items()))),
        outputs=dict(MANIFEST.outputs),
        participants=dict(reversed(list(MANIFEST.participants.items()))),
        enclaves=list(MANIFEST.enclaves),
        expires_at=MANIFEST.expires_at,
    )
    assert rebuilt.hash == MANIFEST.hash  # insertion order of the Python maps does not matter


def test_manifest_is_read_only() -> None:
    with pytest.raises(AttributeError):
        MANIFEST.expires_at = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        MANIFEST.arguments["order"] = "descending"  # type: ignore[index]
    with pytest.raises(TypeError):
        MANIFEST.inputs["x"] = MANIFEST.inputs["input_data1"]  # type: ignore[index]
    assert isinstance(MANIFEST.arguments["limits"], tuple)


def test_create_computes_participants_and_sorts_owners() -> None:
    assert set(MANIFEST.participants) == {ALICE.party_id, BOB.party_id, CAROL.party_id}
    assert MANIFEST.participants[ALICE.party_id] == ParticipantKeys(ALICE.identity.signing_key, ALICE.identity.hpke_key)
    assert MANIFEST.outputs["output_result1"].owners == tuple(sorted([ALICE.party_id, BOB.party_id]))
    # identities without a role are left out; the function owner is a participant
    m = make_manifest(parties=[ALICE.identity, BOB.identity, DAVE.identity])
    assert DAVE.party_id not in m.participants
    m = make_manifest(
        function=FunctionRef("private", 3, DAVE.party_id), parties=[ALICE.identity, BOB.identity, DAVE.identity]
    )
    assert DAVE.party_id in m.participants and m.roles()[DAVE.party_id] == "function owner"
    # fresh task ids, default expiry
    assert make_manifest().task_id != make_manifest().task_id
    m = make_manifest(expires_at=None, lifetime=60)
    assert time.time() < m.expires_at <= time.time() + 61


def test_create_refuses_missing_identities() -> None:
    with pytest.raises(InvalidArgumentError, match="no identity given for the owner of input 'input_data2'"):
        make_manifest(parties=[ALICE.identity])
    with pytest.raises(InvalidArgumentError, match="no identity given for the function owner"):
        make_manifest(function=FunctionRef("f", 1, DAVE.party_id))
    with pytest.raises(InvalidArgumentError, match="no identity given for the owner of output 'o'"):
        make_manifest(outputs={"o": [DAVE.party_id]})


# --------------------------------------------------------------------------- rule violations


def _set(path: tuple[Any, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def change(m: dict[str, Any]) -> None:
        target = m
        for key in path[:-1]:
            target = target[key]
        if value is DELETE:
            del target[path[-1]]
        else:
            target[path[-1]] = value

    return change


DELETE = object()
A, B, C = ALICE.party_id, BOB.party_id, CAROL.party_id


def _participants_keyed_upper(m: dict[str, Any]) -> None:
    m["participants"] = {k.upper(): v for k, v in m["participants"].items()}


def _participant_swapped_keys(m: dict[str, Any]) -> None:
    p = m["participants"]
    p[A.hex()], p[B.hex()] = p[B.hex()], p[A.hex()]


def _extra_participant(m: dict[str, Any]) -> None:
    d = DAVE.identity
    m["participants"][d.party_id.hex()] = {"signing_key": d.signing_key, "hpke_key": d.hpke_key}


def _too_many_participants(m: dict[str, Any]) -> None:
    parties = [Party.generate().identity for _ in range(63)]
    m["outputs"] = {f"o{i}": {"owners": [p.party_id]} for i, p in enumerate(parties)}
    for p in parties:
        m["participants"][p.party_id.hex()] = {"signing_key": p.signing_key, "hpke_key": p.hpke_key}


def _slots(n: int, kind: str) -> Callable[[dict[str, Any]], None]:
    def change(m: dict[str, Any]) -> None:
        if kind == "inputs":
            m["inputs"] = {f"s{i}": {"owner": A, "dataset_id": DATASET_A, "format": "mesatee-v1"} for i in range(n)}
        else:
            m["outputs"] = {f"s{i}": {"owners": [A]} for i in range(n)}

    return change


VIOLATIONS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    **{
        f"missing {f}": (_set((f,), DELETE), f"missing field '{f}'")
        for f in canonical.decode(MANIFEST.to_bytes(), max_size=1 << 20)
    },
    "unknown field": (_set(("extra",), 1), "unknown field 'extra'"),
    "version 2": (_set(("version",), 2), "version: unsupported version 2"),
    "version as str": (_set(("version",), "1"), "version must be an int"),
    "task_id 15 bytes": (_set(("task_id",), bytes(15)), "task_id must be 16 bytes"),
    "task_id str": (_set(("task_id",), "x" * 16), "task_id must be bytes"),
    "creator 31 bytes": (_set(("creator",), bytes(31)), "creator must be 32 bytes"),
    "creator not a participant": (_set(("creator",), DAVE.party_id), "missing the creator"),
    "function not a map": (_set(("function",), "f"), "function: value must be a map"),
    "function owner missing": (_set(("function", "owner"), DELETE), "function: missing field 'owner'"),
    "function extra field": (_set(("function", "doc"), "x"), "function: unknown field 'doc'"),
    "function name int": (_set(("function", "name"), 1), "function: name must be a str"),
    "function name empty": (_set(("function", "name"), ""), "function: name must not be empty"),
    "function version str": (_set(("function", "version"), "1"), "function: version must be an int"),
    "function owner short": (_set(("function", "owner"), bytes(5)), "function: owner must be 32 bytes"),
    "function owner not a participant": (_set(("function", "owner"), DAVE.party_id), "missing the function owner"),
    "arguments not a map": (_set(("arguments",), [1]), "arguments must be a map"),
    "inputs not a map": (_set(("inputs",), []), "inputs must be a map"),
    "input slot with a space": (_set(("inputs", "a b"), {}), "slot name 'a b'"),
    "input slot non-ascii": (_set(("inputs", "é"), {}), "slot name 'é'"),
    "input slot 65 chars": (_set(("inputs", "s" * 65), {}), "slot name"),
    "input slot empty": (_set(("inputs", ""), {}), "slot name ''"),
    "input owner short": (
        _set(("inputs", "input_data1", "owner"), bytes(31)),
        r"inputs\['input_data1'\]: owner must be 32",
    ),
    "input owner not a participant": (
        _set(("inputs", "input_data1", "owner"), DAVE.party_id),
        "missing the owner of input",
    ),
    "input dataset_id short": (_set(("inputs", "input_data1", "dataset_id"), bytes(31)), "dataset_id must be 32 bytes"),
    "input format unknown": (_set(("inputs", "input_data1", "format"), "zip"), "format 'zip' is not one of"),
    "input missing format": (_set(("inputs", "input_data1", "format"), DELETE), "missing field 'format'"),
    "input extra field": (_set(("inputs", "input_data1", "iv"), bytes(12)), "unknown field 'iv'"),
    "65 inputs": (_slots(65, "inputs"), "inputs: 65 slots exceed the limit of 64"),
    "output slot bad name": (_set(("outputs", "out/put"), {"owners": [A]}), "slot name 'out/put'"),
    "output owners empty": (_set(("outputs", "output_result2", "owners"), []), "at least one"),
    "output owners unsorted": (
        _set(("outputs", "output_result1", "owners"), sorted([A, B], reverse=True)),
        "sorted and unique",
    ),
    "output owners repeated": (_set(("outputs", "output_result2", "owners"), [B, B]), "sorted and unique"),
    "output owners not an array": (_set(("outputs", "output_result2", "owners"), B), "owners must be an array"),
    "output owner short": (_set(("outputs", "output_result2", "owners"), [bytes(3)]), r"owners\[0\] must be 32 bytes"),
    "output owner not a participant": (
        _set(("outputs", "output_result2", "owners"), [DAVE.party_id]),
        "missing the owner of output",
    ),
    "65 outputs": (_slots(65, "outputs"), "outputs: 65 slots exceed the limit of 64"),
    "participants keyed in upper case": (_participants_keyed_upper, "not a party id in lowercase hex"),
    "participants keyed by another id": (_participant_swapped_keys, "is not the SHA-256 of its signing_key"),
    "participant without a role": (_extra_participant, "has no role in the task"),
    "participant hpke_key short": (_set(("participants", A.hex(), "hpke_key"), bytes(31)), "hpke_key must be 32 bytes"),
    "participant extra field": (_set(("participants", A.hex(), "name"), "alice"), "unknown field 'name'"),
    "participant missing": (_set(("participants", B.hex()), DELETE), "missing the owner of"),
    "65 participants": (_too_many_participants, "66 parties exceed the limit of 64"),
    "enclaves empty": (_set(("enclaves",), []), "enclaves must name 1..16 enclaves, got 0"),
    "17 enclaves": (_set(("enclaves",), [{"mrenclave": MRENCLAVE}] * 17), "enclaves must name 1..16 enclaves, got 17"),
    "enclaves a map": (_set(("enclaves",), {"mrenclave": MRENCLAVE}), "enclaves must be an array"),
    "enclave both forms": (_set(("enclaves", 0, "mrsigner"), MRENCLAVE), r"enclaves\[0\]: unknown field 'mrsigner'"),
    "enclave mrenclave short": (_set(("enclaves", 0, "mrenclave"), bytes(31)), "mrenclave must be 32 bytes"),
    "enclave signer without product": (
        _set(("enclaves", 0), {"mrsigner": MRENCLAVE, "min_security_version": 0}),
        "missing field 'product_id'",
    ),
    "enclave product_id too big": (
        _set(("enclaves", 0), {"mrsigner": MRENCLAVE, "product_id": 70000, "min_security_version": 0}),
        "product_id must be in 0..65535",
    ),
    "enclave min version negative": (
        _set(("enclaves", 0), {"mrsigner": MRENCLAVE, "product_id": 1, "min_security_version": -1}),
        "min_security_version must be in 0..65535",
    ),
    "enclave empty map": (_set(("enclaves", 0), {}), "missing field 'mrsigner'"),
    "expires_at str": (_set(("expires_at",), "2030"), "expires_at must be an int"),
    "expires_at float": (_set(("expires_at",), 2e9), "expires_at must be an int"),
    "expires_at above int64": (_set(("expires_at",), 2**63), "expires_at must be in"),
}


@pytest.mark.parametrize("name", VIOLATIONS)
def test_every_rule_violation_is_refused_naming_the_field(name: str) -> None:
    change, message = VIOLATIONS[name]
    m = raw()
    change(m)
    with pytest.raises(FormatError, match=message) as caught:
        Manifest.from_bytes(canonical.encode(m))
    assert str(caught.value).startswith("manifest: ")
    assert caught.value.status == Status.FORMAT


def test_non_canonical_and_oversized_manifests_are_refused() -> None:
    data = MANIFEST.to_bytes()
    with pytest.raises(FormatError, match="trailing"):
        Manifest.from_bytes(data + b"\0")
    with pytest.raises(FormatError, match="shortest"):
        Manifest.from_bytes(b"\xde\x00\x0a" + data[1:])
    with pytest.raises(FormatError, match="exceed the limit"):
        Manifest.from_bytes(data, max_size=len(data) - 1)
    with pytest.raises(FormatError, match="manifest: value must be a map"):
        Manifest.from_bytes(canonical.encode([1]))


def test_python_construction_applies_the_same_rules() -> None:
    keys = {p.party_id: p.identity.keys for p in (ALICE, CAROL)}
    base = dict(
        task_id=bytes(16),
        creator=C,
        function=FunctionRef("f", 1),
        arguments={},
        inputs={"in": InputSlot(A, DATASET_A)},
        outputs={"out": OutputSlot((C,))},
        participants=keys,
        enclaves=(EnclaveRequirement(mrenclave=MRENCLAVE),),
        expires_at=1,
    )
    Manifest(**base)
    bad = {
        "participants": ({C: CAROL.identity.keys}, "missing the owner of input 'in'"),
        "outputs": ({"out": OutputSlot((B,))}, "missing the owner of output"),
        "inputs": ({"bad slot": InputSlot(A, DATASET_A)}, "slot name"),
        "enclaves": ((), "at least|1..16"),
        "arguments": ({"x": float("nan")}, "NaN"),
        "function": ("f", "FunctionRef"),
        "task_id": (bytes(15), "task_id"),
    }
    for field, (value, message) in bad.items():
        with pytest.raises(InvalidArgumentError, match=message):
            Manifest(**{**base, field: value})
    with pytest.raises(InvalidArgumentError, match="sorted and unique"):
        OutputSlot(tuple(sorted([A, B], reverse=True)))
    with pytest.raises(InvalidArgumentError, match="mrenclave alone"):
        EnclaveRequirement(mrenclave=MRENCLAVE, mrsigner=MRENCLAVE, product_id=1)
    with pytest.raises(InvalidArgumentError, match="needs mrenclave, or mrsigner with product_id"):
        EnclaveRequirement(mrsigner=MRENCLAVE)
    with pytest.raises(InvalidArgumentError, match="format"):
        InputSlot(A, DATASET_A, "aes")


# --------------------------------------------------------------------------- enclaves and approvals


def test_check_enclave() -> None:
    enclave = FakeEnclave()
    claims = enclave.claims
    make_manifest(enclaves=[enclave.requirement()]).check_enclave(claims)
    signer = EnclaveRequirement(mrsigner=claims.mrsigner, product_id=claims.product_id, min_security_version=3)
    make_manifest(enclaves=[EnclaveRequirement(mrenclave=bytes(32)), signer]).check_enclave(claims)
    cases = [
        ([EnclaveRequirement(mrenclave=bytes(32))], Status.MRENCLAVE_MISMATCH),
        ([EnclaveRequirement(mrsigner=bytes(32), product_id=claims.product_id)], Status.MRSIGNER_MISMATCH),
        ([EnclaveRequirement(mrsigner=claims.mrsigner, product_id=99)], Status.PRODUCT_ID_MISMATCH),
        (
            [EnclaveRequirement(mrsigner=claims.mrsigner, product_id=claims.product_id, min_security_version=4)],
            Status.SECURITY_VERSION_TOO_LOW,
        ),
    ]
    for enclaves, status in cases:
        with pytest.raises(AttestationError, match="meets none of the manifest's requirements") as caught:
            make_manifest(enclaves=enclaves).check_enclave(claims)
        assert caught.value.status == status
    debug = FakeEnclave(debug=True).claims
    with pytest.raises(AttestationError, match="debug") as caught:
        make_manifest(enclaves=[signer]).check_enclave(debug)
    assert caught.value.status == Status.DEBUG_NOT_ALLOWED
    make_manifest(enclaves=[EnclaveRequirement(mrenclave=debug.mrenclave)]).check_enclave(debug)  # exact build: yes


def test_verify_approval() -> None:
    signature = ALICE.approve(MANIFEST)
    verify_approval(MANIFEST, ALICE.party_id, signature)
    with pytest.raises(CryptoError, match="does not verify"):
        verify_approval(MANIFEST, BOB.party_id, signature)
    with pytest.raises(CryptoError, match="does not verify"):
        verify_approval(make_manifest(), ALICE.party_id, signature)
    with pytest.raises(InvalidArgumentError, match="not a participant"):
        verify_approval(MANIFEST, DAVE.party_id, signature)


def test_encode_invocation() -> None:
    approvals = {p.party_id: p.approve(MANIFEST) for p in (ALICE, BOB, CAROL)}
    data = encode_invocation(MANIFEST.to_bytes(), approvals, {"input_data1": b"g"}, {"input_data1": b"f"}, 1234)
    assert canonical.decode(data, max_size=1 << 20) == {
        "manifest": MANIFEST.to_bytes(),
        "approvals": {k.hex(): v for k, v in approvals.items()},
        "grants": {"input_data1": b"g"},
        "inputs": {"input_data1": b"f"},
        "now": 1234,
    }
    with pytest.raises(InvalidArgumentError, match="64 bytes"):
        encode_invocation(MANIFEST.to_bytes(), {A: bytes(63)}, {}, {}, 0)
    with pytest.raises(InvalidArgumentError, match="approvals key must be bytes"):
        encode_invocation(MANIFEST.to_bytes(), {A.hex(): bytes(64)}, {}, {}, 0)  # type: ignore[dict-item]
    with pytest.raises(InvalidArgumentError, match="32 bytes"):
        encode_invocation(MANIFEST.to_bytes(), {A[:31]: bytes(64)}, {}, {}, 0)
    with pytest.raises(InvalidArgumentError, match="now"):
        encode_invocation(MANIFEST.to_bytes(), {}, {}, {}, 1.5)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- results


def _echo(arguments: Any, inputs: dict[str, bytes]) -> tuple[bytes, dict[str, bytes]]:
    return b"done: " + b"+".join(inputs[s] for s in sorted(inputs)), {"out": b"secret output", "log": b"log"}


@pytest.fixture(scope="module")
def task() -> tuple[FakeEnclave, Manifest, bytes]:
    """A task with one input, run by the fake enclave: (enclave, manifest, result bytes)."""
    enclave = FakeEnclave()
    key = os.urandom(32)
    file = files.encrypt_bytes(b"alice's data", key)
    manifest = Manifest.create(
        creator=CAROL.identity,
        function=FunctionRef("echo", 1),
        enclaves=enclave.requirement(),
        parties=[ALICE.identity],
        inputs={"in": InputSlot(A, hashlib.sha256(file).digest())},
        outputs={"out": [ALICE.identity, CAROL.identity], "log": [CAROL.identity]},
    )
    grant = hpke.seal(enclave.hpke_public_key, canonical.encode({"key": key}), hpke.grant_info(manifest.hash, "in"))
    approvals = {p.party_id: p.approve(manifest) for p in (ALICE, CAROL)}
    invocation = encode_invocation(manifest.to_bytes(), approvals, {"in": grant}, {"in": file}, int(time.time()))
    return enclave, manifest, enclave.invoke(invocation, _echo)


def test_result_parses_verifies_and_re_encodes(task: tuple[FakeEnclave, Manifest, bytes]) -> None:
    enclave, manifest, data = task
    result = TaskResult.from_bytes(data)
    assert result.to_bytes() == data
    receipt = result.verify(manifest.hash, enclave.signing_public_key)
    assert receipt.manifest_hash == manifest.hash and receipt.status == "ok"
    assert set(receipt.outputs) == {"out", "log"}
    assert set(receipt.return_value) == {A, C}
    assert receipt.enclave == EnclaveMeasurement.of(enclave.claims)
    assert Receipt.from_bytes(result.receipt_bytes).to_bytes() == result.receipt_bytes
    assert set(result.outputs["out"].keys) == {A, C} and set(result.outputs["log"].keys) == {C}


def test_receipt_for_another_manifest_is_refused(task: tuple[FakeEnclave, Manifest, bytes]) -> None:
    enclave, _, data = task
    with pytest.raises(FormatError, match=r"receipt is for another task \(manifest hash"):
        TaskResult.from_bytes(data).verify(MANIFEST.hash, enclave.signing_public_key)


def test_bad_signature_is_refused(task: tuple[FakeEnclave, Manifest, bytes]) -> None:
    enclave, manifest, data = task
    result = TaskResult.from_bytes(data)
    with pytest.raises(CryptoError, match="signature does not verify under the enclave's signing key"):
        result.verify(manifest.hash, FakeEnclave().signing_public_key)
    forged = TaskResult(result.receipt_bytes, bytes(64), result.outputs, result.return_value)
    with pytest.raises(CryptoError, match="signature"):
        forged.verify(manifest.hash, enclave.signing_public_key)
    receipt = canonical.decode(result.receipt_bytes, max_size=1 << 20)
    receipt["outputs"]["out"] = bytes(32)
    changed = TaskResult(canonical.encode(receipt), result.signature, result.outputs, result.return_value)
    with pytest.raises(CryptoError, match="signature"):
        changed.verify(manifest.hash, enclave.signing_public_key)


def _resign(enclave: FakeEnclave, receipt: dict[str, Any], result: TaskResult) -> TaskResult:
    receipt_bytes = canonical.encode(receipt)
    signature = enclave.signing_key.sign(hpke.receipt_message(receipt_bytes))
    return TaskResult(receipt_bytes, signature, result.outputs, result.return_value)


def test_output_and_return_value_digest_mismatches_are_refused(task: tuple[FakeEnclave, Manifest, bytes]) -> None:
    enclave, manifest, data = task
    result = TaskResult.from_bytes(data)
    outputs = dict(result.outputs)
    outputs["out"] = OutputFile(outputs["log"].file, outputs["out"].keys)  # swapped file
    with pytest.raises(CryptoError, match="output 'out' does not hash to the receipt's digest"):
        TaskResult(result.receipt_bytes, result.signature, outputs, result.return_value).verify(
            manifest.hash, enclave.signing_public_key
        )
    values = dict(result.return_value)
    values[A] = values[C]
    with pytest.raises(CryptoError, match=f"return value for {A.hex()} does not hash"):
        TaskResult(result.receipt_bytes, result.signature, result.outputs, values).verify(
            manifest.hash, enclave.signing_public_key
        )
    fewer = {k: v for k, v in result.outputs.items() if k != "log"}  # deleted by its owners: still verifies
    TaskResult(result.receipt_bytes, result.signature, fewer, result.return_value).verify(
        manifest.hash, enclave.signing_public_key
    )
    more = {**result.outputs, "extra": result.outputs["log"]}
    with pytest.raises(FormatError, match="are not among the receipt's"):
        TaskResult(result.receipt_bytes, result.signature, more, result.return_value).verify(
            manifest.hash, enclave.signing_public_key
        )
    receipt = canonical.decode(result.receipt_bytes, max_size=1 << 20)
    del receipt["return_value"][A.hex()]
    with pytest.raises(FormatError, match="not addressed to the parties the receipt lists"):
        _resign(enclave, receipt, result).verify(manifest.hash, enclave.signing_public_key)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda r: r.update(status="failed"), "status: 'failed'"),
        (lambda r: r.update(version=2), "unsupported version 2"),
        (lambda r: r.update(extra=1), "unknown field 'extra'"),
        (lambda r: r.pop("enclave"), "missing field 'enclave'"),
        (lambda r: r["enclave"].pop("mrsigner"), "enclave: missing field 'mrsigner'"),
        (lambda r: r["enclave"].update(product_id=-1), "product_id must be in"),
        (lambda r: r.update(manifest_hash=bytes(31)), "manifest_hash must be 32 bytes"),
        (lambda r: r["outputs"].update(out=bytes(31)), "must be 32 bytes"),
        (lambda r: r["outputs"].update({"bad slot": bytes(32)}), "slot name"),
        (lambda r: r["return_value"].update({"AB" * 32: bytes(32)}), "lowercase hex"),
    ],
)
def test_malformed_receipts_are_refused(task: tuple[FakeEnclave, Manifest, bytes], change, message: str) -> None:
    enclave, manifest, data = task
    result = TaskResult.from_bytes(data)
    receipt = canonical.decode(result.receipt_bytes, max_size=1 << 20)
    change(receipt)
    with pytest.raises(FormatError, match=message):
        Receipt.from_bytes(canonical.encode(receipt))
    with pytest.raises(FormatError, match=message):
        _resign(enclave, receipt, result).verify(manifest.hash, enclave.signing_public_key)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda r: r.pop("signature"), "missing field 'signature'"),
        (lambda r: r.update(signature=bytes(63)), "signature must be 64 bytes"),
        (lambda r: r.update(extra=b""), "unknown field 'extra'"),
        (lambda r: r["outputs"]["out"].pop("keys"), r"outputs\['out'\]: missing field 'keys'"),
        (lambda r: r["outputs"]["out"].update(file="text"), "file must be bytes"),
        (lambda r: r["outputs"]["out"]["keys"].update({"xy": b""}), "lowercase hex"),
        (lambda r: r["return_value"].update({"00" * 31: b""}), "lowercase hex"),
        (lambda r: r.update(receipt=[]), "receipt must be bytes"),
    ],
)
def test_malformed_results_are_refused(task: tuple[FakeEnclave, Manifest, bytes], change, message: str) -> None:
    _, _, data = task
    result = canonical.decode(data, max_size=1 << 30)
    change(result)
    with pytest.raises(FormatError, match=message) as caught:
        TaskResult.from_bytes(canonical.encode(result))
    assert str(caught.value).startswith("result: ")


def test_result_size_limit(task: tuple[FakeEnclave, Manifest, bytes]) -> None:
    _, _, data = task
    with pytest.raises(FormatError, match="exceed the limit"):
        TaskResult.from_bytes(data, max_size=100)


def test_return_value_padding_is_strict() -> None:
    from mesatee.core.manifest import pad_return_value, unpad_return_value

    for value in (b"", b"true", b"x" * 251, b"x" * 252, b"y" * 1000):
        padded = pad_return_value(value)
        assert len(padded) % 256 == 0 and unpad_return_value(padded) == value
    assert len(pad_return_value(b"true")) == len(pad_return_value(b"false"))
    good = pad_return_value(b"true")
    for bad in (good[:-1], good + bytes(256), good[:-1] + b"\x01", (300).to_bytes(4, "big") + good[4:], b""):
        with pytest.raises(FormatError):
            unpad_return_value(bad)
