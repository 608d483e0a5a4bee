"""Tasks through the real enclave: who agreed to what is enforced inside it, whatever the host does."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

import mesatee
from conftest import REPO
from mesatee import CryptoError, FormatError, Status, TaskRefusedError
from mesatee.core import canonical
from mesatee.core.manifest import EnclaveRequirement, FunctionRef, OutputSlot, TaskResult
from task_host import prepare, run

TEACLAVE = REPO.parent / "shared" / "fixtures" / "teaclave"


@pytest.fixture(scope="module")
def world(task_world):
    enclave, claims, (alice, bob, carol, _) = task_world
    return enclave, claims, alice, bob, carol


def refused(enclave: mesatee.Enclave, invocation: bytes, status: Status) -> TaskRefusedError:
    with pytest.raises(TaskRefusedError) as info:
        enclave.invoke(invocation)
    assert info.value.status == status, str(info.value)
    return info.value


def psi_task(world, tmp_path: Path):
    _enclave, claims, alice, bob, _ = world
    return prepare(
        tmp_path, claims, alice, "ordered_set_intersect",
        inputs={"input_data1": (alice, (TEACLAVE / "ordered_set_intersect" / "psi0.txt").read_bytes()),
                "input_data2": (bob, (TEACLAVE / "ordered_set_intersect" / "psi1.txt").read_bytes())},
        outputs={"output_result1": [alice], "output_result2": [bob]},
    )  # fmt: skip


# --------------------------------------------------------------------------- accepted


def test_echo_two_parties(world, tmp_path: Path) -> None:
    enclave, claims, alice, bob, _ = world
    task = prepare(tmp_path, claims, alice, "echo", arguments={"message": "Hello Teaclave!"}, others=(bob,))
    # bob has no role, so he is not a participant: the manifest holds exactly the parties with roles
    assert [p.party_id for p in task.participants] == [alice.party_id]
    opened = run(enclave, task, claims)
    assert opened[alice.party_id].return_value == b"Hello Teaclave!"


def test_two_party_intersection_outputs_reach_exactly_their_owners(world, tmp_path: Path) -> None:
    enclave, claims, alice, bob, _ = world
    task = psi_task(world, tmp_path)
    opened = run(enclave, task, claims)
    assert opened[alice.party_id].return_value == opened[bob.party_id].return_value == b"3 common items"
    assert dict(opened[alice.party_id].outputs) == {"output_result1": b"0101010"}
    assert dict(opened[bob.party_id].outputs) == {"output_result2": b"01101"}
    receipt = opened[alice.party_id].receipt
    assert receipt.manifest_hash == task.manifest.hash and set(receipt.outputs) == {"output_result1", "output_result2"}


def test_return_values_do_not_reveal_their_length(world, tmp_path: Path) -> None:
    enclave, claims, alice, bob, _ = world
    sizes = set()
    for password in (b"password\n", b"not exposed at all\n"):
        task = prepare(
            tmp_path, claims, alice, "password_check",
            inputs={"password": (alice, password), "exposed_passwords": (bob, b"123456\npassword\n")},
        )  # fmt: skip
        result = TaskResult.from_bytes(enclave.invoke(task.invocation()))
        sizes |= {len(sealed) for sealed in result.return_value.values()}
        assert alice.open_result(result, task.manifest, claims).return_value in (b"true", b"false")
    assert len(sizes) == 1  # "true" and "false" look alike to the host


def test_three_parties_shared_output(world, tmp_path: Path) -> None:
    enclave, claims, alice, bob, carol = world
    task = prepare(
        tmp_path, claims, carol, "password_check",
        inputs={"password": (alice, b"password\n"),
                "exposed_passwords": (bob, (TEACLAVE / "password_check" / "exposed_passwords.txt").read_bytes())},
    )  # fmt: skip
    opened = run(enclave, task, claims)
    assert len(opened) == 3
    assert {o.return_value for o in opened.values()} == {b"true"}


def test_teaclave_formats_and_online_decrypt(world, tmp_path: Path) -> None:
    enclave, claims, alice, _, _ = world
    for key, data, algorithm in (
        ("aqUdgZ0lJnuz9yiPkoDxM6ZcTcVVpd4KKLqzbHD88Lg=", "CaZd8qSMMlBp8SjSXj2I4dQIuC9KkZ5DI/ATo1sWJw==", "aes256gcm"),
        ("aqUdgZ0lJnuz9yiPkoDxMw==", "OqMscYqxk1CshHQZulTrrDlJjS/v6BE/clWJyTerUw==", "aes128gcm"),
    ):
        arguments = {"key": key, "nonce": "AAECAwQFBgcICQoL", "encrypted_data": data, "algorithm": algorithm}
        task = prepare(tmp_path, claims, alice, "online_decrypt", arguments=arguments)
        assert run(enclave, task, claims)[alice.party_id].return_value == b"Hello Teaclave!"


def test_functions_are_declared(world) -> None:
    enclave = world[0]
    declared = enclave.functions()
    assert {"echo", "online_decrypt", "ordered_set_intersect", "password_check"} <= set(declared)
    order = next(a for a in declared["ordered_set_intersect"].arguments if a.name == "order")
    assert (order.required, order.default, order.choices) == (False, "ascending", ("ascending", "descending"))
    assert [s.name for s in declared["ordered_set_intersect"].outputs] == ["output_result1", "output_result2"]


# --------------------------------------------------------------------------- the host cheats


def test_missing_approval(world, tmp_path: Path) -> None:
    enclave, *_ = world
    task = psi_task(world, tmp_path)
    bob = task.participants[1]
    del task.approvals[bob.party_id]
    assert bob.identity.hex in str(refused(enclave, task.invocation(), Status.APPROVAL_MISSING))


def test_approval_for_another_manifest(world, tmp_path: Path) -> None:
    enclave, claims, alice, *_ = world
    task = psi_task(world, tmp_path)
    other = prepare(tmp_path / "o", claims, alice, "echo", arguments={"message": "x"})
    task.approvals[alice.party_id] = other.approvals[alice.party_id]
    refused(enclave, task.invocation(), Status.APPROVAL_INVALID)


def _tampered(task, **changes) -> bytes:
    """The manifest with fields changed after everyone approved it."""
    return dataclasses.replace(task.manifest, **changes).to_bytes()


def test_changed_argument(world, tmp_path: Path) -> None:
    enclave, *_ = world
    task = psi_task(world, tmp_path)
    bad = _tampered(task, arguments={"order": "descending"})
    refused(enclave, task.invocation(manifest_bytes=bad), Status.APPROVAL_INVALID)


def test_swapped_function(world, tmp_path: Path) -> None:
    enclave, *_ = world
    task = psi_task(world, tmp_path)
    bad = _tampered(task, function=FunctionRef("password_check", 1))
    refused(enclave, task.invocation(manifest_bytes=bad), Status.APPROVAL_INVALID)


def test_added_participant(world, tmp_path: Path) -> None:
    enclave, _claims, alice, _bob, carol = world
    task = psi_task(world, tmp_path)
    # carol gets a copy of an output: she must be a participant, and approvals no longer match
    outputs = dict(task.manifest.outputs)
    outputs["output_result1"] = OutputSlot(tuple(sorted([alice.party_id, carol.party_id])))
    participants = {
        **task.manifest.participants,
        carol.party_id: task.manifest.participants[alice.party_id].__class__(
            carol.identity.signing_key, carol.identity.hpke_key
        ),
    }
    bad = _tampered(task, outputs=outputs, participants=participants)
    refused(enclave, task.invocation(manifest_bytes=bad), Status.APPROVAL_MISSING)
    task.approvals[carol.party_id] = carol.approve(canonical_manifest(bad))  # carol colludes with the host
    refused(enclave, task.invocation(manifest_bytes=bad), Status.APPROVAL_INVALID)


def canonical_manifest(data: bytes):
    from mesatee.core.manifest import Manifest

    return Manifest.from_bytes(data)


def test_removed_participant(world, tmp_path: Path) -> None:
    enclave, *_ = world
    task = psi_task(world, tmp_path)
    bob = task.participants[1]
    value = canonical.decode(task.manifest.to_bytes(), max_size=1 << 20)
    del value["participants"][bob.identity.hex]
    refused(enclave, task.invocation(manifest_bytes=canonical.encode(value)), Status.MANIFEST_INVALID)


def test_output_readdressed_to_a_non_owner(world, tmp_path: Path) -> None:
    enclave, _claims, alice, bob, _ = world
    task = psi_task(world, tmp_path)
    outputs = {"output_result1": OutputSlot((alice.party_id,)), "output_result2": OutputSlot((alice.party_id,))}
    refused(enclave, task.invocation(manifest_bytes=_tampered(task, outputs=outputs)), Status.APPROVAL_INVALID)
    value = canonical.decode(task.manifest.to_bytes(), max_size=1 << 20)
    value["outputs"]["output_result2"]["owners"] = [alice.party_id]
    value["inputs"]["input_data2"]["owner"] = alice.party_id  # keep every role consistent; approvals still differ
    del value["participants"][bob.identity.hex]
    refused(enclave, task.invocation(manifest_bytes=canonical.encode(value)), Status.APPROVAL_INVALID)


def test_grant_from_another_task(world, tmp_path: Path) -> None:
    enclave, *_ = world
    first, second = psi_task(world, tmp_path / "a"), psi_task(world, tmp_path / "b")
    second.grants["input_data1"] = first.grants["input_data1"]
    refused(enclave, second.invocation(), Status.GRANT_INVALID)  # bound to the other task's manifest
    third = psi_task(world, tmp_path / "c")
    third.grants["input_data2"] = third.grants["input_data1"]  # a grant for another slot
    refused(enclave, third.invocation(), Status.GRANT_INVALID)


def test_grant_replayed_into_a_new_task_over_the_same_dataset(world, tmp_path: Path) -> None:
    enclave, _claims, _alice, _bob, _ = world
    task = psi_task(world, tmp_path)
    again = dataclasses.replace(task.manifest, task_id=bytes(16))
    replay = dataclasses.replace(task, manifest=again)
    replay.approvals = {p.party_id: p.approve(again) for p in task.participants}  # everyone approves the new task
    refused(enclave, replay.invocation(), Status.GRANT_INVALID)  # but old grants are bound to the old manifest


def test_swapped_or_modified_input(world, tmp_path: Path) -> None:
    enclave, *_ = world
    task = psi_task(world, tmp_path)
    swapped = dict(task.inputs)
    swapped["input_data1"], swapped["input_data2"] = task.inputs["input_data2"], task.inputs["input_data1"]
    task_swapped = dataclasses.replace(task, inputs=swapped)
    refused(enclave, task_swapped.invocation(), Status.INPUT_MISMATCH)
    modified = dict(task.inputs)
    data = bytearray(modified["input_data1"])
    data[-1] ^= 1
    modified["input_data1"] = bytes(data)
    assert "dataset id" in str(refused(enclave, dataclasses.replace(task, inputs=modified).invocation(),
                                       Status.INPUT_MISMATCH))  # fmt: skip
    missing = dict(task.inputs)
    del missing["input_data2"]
    refused(enclave, dataclasses.replace(task, inputs=missing).invocation(), Status.INPUT_MISMATCH)


def test_enclave_of_another_identity(world, tmp_path: Path) -> None:
    enclave, claims, alice, *_ = world
    task = prepare(tmp_path, claims, alice, "echo", arguments={"message": "x"},
                   enclaves=[EnclaveRequirement(mrenclave=bytes(32))])  # fmt: skip
    refused(enclave, task.invocation(), Status.ENCLAVE_NOT_ACCEPTED)
    by_signer = prepare(
        tmp_path,
        claims,
        alice,
        "echo",
        arguments={"message": "x"},
        enclaves=[EnclaveRequirement(mrsigner=claims.mrsigner, product_id=1, min_security_version=2)],
    )
    refused(enclave, by_signer.invocation(), Status.ENCLAVE_NOT_ACCEPTED)  # the version is too low
    ok = prepare(
        tmp_path,
        claims,
        alice,
        "echo",
        arguments={"message": "x"},
        enclaves=[EnclaveRequirement(mrsigner=claims.mrsigner, product_id=1, min_security_version=1)],
    )
    assert run(enclave, ok, claims)[alice.party_id].return_value == b"x"


def test_grant_wrapped_for_another_enclave_does_not_open(world, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    enclave, claims, alice, _bob, _ = world
    impostor = X25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)  # fmt: skip
    task = psi_task(world, tmp_path)
    fake_claims = dataclasses.replace(claims, hpke_public_key=impostor)
    task.grants["input_data1"] = alice.grant(task.manifest, "input_data1", fake_claims)
    refused(enclave, task.invocation(), Status.GRANT_INVALID)


def test_replayed_receipt_for_another_task(world, tmp_path: Path) -> None:
    enclave, claims, alice, *_ = world
    first = prepare(tmp_path, claims, alice, "echo", arguments={"message": "first"})
    second = prepare(tmp_path, claims, alice, "echo", arguments={"message": "second"})
    old = TaskResult.from_bytes(enclave.invoke(first.invocation()))
    with pytest.raises(FormatError, match="another task"):
        alice.open_result(old, second.manifest, claims)


def test_tampered_result_refused_by_the_party(world, tmp_path: Path) -> None:
    enclave, claims, alice, bob, _ = world
    task = psi_task(world, tmp_path)
    result = TaskResult.from_bytes(enclave.invoke(task.invocation()))
    value = canonical.decode(result.to_bytes(), max_size=1 << 30)
    file = bytearray(value["outputs"]["output_result1"]["file"])
    file[-1] ^= 1
    value["outputs"]["output_result1"]["file"] = bytes(file)
    with pytest.raises(CryptoError):
        alice.open_result(TaskResult.from_bytes(canonical.encode(value)), task.manifest, claims)
    forged = dict(value, signature=bytes(64))
    with pytest.raises(CryptoError):
        bob.open_result(TaskResult.from_bytes(canonical.encode(forged)), task.manifest, claims)


def test_expired_manifest(world, tmp_path: Path) -> None:
    enclave, claims, alice, *_ = world
    task = prepare(tmp_path, claims, alice, "echo", arguments={"message": "x"}, expires_at=int(time.time()) + 60)
    refused(enclave, task.invocation(now=int(time.time()) + 3600), Status.MANIFEST_EXPIRED)


def test_unknown_function_bad_arguments_and_slots(world, tmp_path: Path) -> None:
    enclave, claims, alice, *_ = world
    unknown = prepare(tmp_path, claims, alice, "no_such_function")
    refused(enclave, unknown.invocation(), Status.FUNCTION_UNKNOWN)
    missing = prepare(tmp_path, claims, alice, "echo")
    assert "missing required argument message" in str(refused(enclave, missing.invocation(), Status.ARGUMENT_INVALID))
    extra = prepare(tmp_path, claims, alice, "echo", arguments={"message": "x", "volume": 11})
    assert "unknown argument volume" in str(refused(enclave, extra.invocation(), Status.ARGUMENT_INVALID))
    typed = prepare(tmp_path, claims, alice, "echo", arguments={"message": 5})
    refused(enclave, typed.invocation(), Status.ARGUMENT_INVALID)
    choice = prepare(
        tmp_path,
        claims,
        alice,
        "online_decrypt",
        arguments={"key": "AA==", "nonce": "AA==", "encrypted_data": "AA==", "algorithm": "rot13"},
    )
    assert "one of" in str(refused(enclave, choice.invocation(), Status.ARGUMENT_INVALID))
    no_slots = prepare(tmp_path, claims, alice, "password_check")
    assert "needs the input slot" in str(refused(enclave, no_slots.invocation(), Status.MANIFEST_INVALID))


def test_bad_input_content_refused_with_its_line(world, tmp_path: Path) -> None:
    enclave, claims, alice, bob, _ = world
    task = prepare(
        tmp_path, claims, alice, "ordered_set_intersect",
        inputs={"input_data1": (alice, b"b\na\n"), "input_data2": (bob, b"a\n")},
        outputs={"output_result1": [alice], "output_result2": [bob]},
    )  # fmt: skip
    error = refused(enclave, task.invocation(), Status.INPUT_INVALID)
    assert "input_data1, line 2" in str(error) and "ascending" in str(error)


@pytest.mark.parametrize("invocation", [b"", b"\x80", b"\xc0", canonical.encode({"manifest": b"x"}), b"\xff" * 100])
def test_malformed_invocations(world, invocation: bytes) -> None:
    with pytest.raises((FormatError, TaskRefusedError)):
        world[0].invoke(invocation)
