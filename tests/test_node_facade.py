"""The Node facade through a real enclave: the whole workflow, each refusal named, statuses, the audit log."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

import pytest

import mesatee
from conftest import REPO
from mesatee.core.manifest import TaskResult
from mesatee.errors import AuditLogError, NodeError, PermissionDeniedError, PolicyError, RequestError, TaskStateError
from mesatee.node import Node, UsagePolicy, sign_request
from mesatee.node.lifecycle import transition
from task_host import Task, prepare

TEACLAVE = REPO.parent / "shared" / "fixtures" / "teaclave" / "ordered_set_intersect"


@pytest.fixture
def world(task_world, tmp_path: Path):
    enclave, claims, (alice, bob, carol, _) = task_world
    node = Node(tmp_path / "node", enclave=enclave)
    for party in (alice, bob, carol):
        node.admit(party.identity)
    yield node, claims, alice, bob, carol
    node.close()


def psi(world, tmp_path: Path) -> Task:
    _node, claims, alice, bob, _ = world
    return prepare(
        tmp_path, claims, alice, "ordered_set_intersect",
        inputs={"input_data1": (alice, (TEACLAVE / "psi0.txt").read_bytes()),
                "input_data2": (bob, (TEACLAVE / "psi1.txt").read_bytes())},
        outputs={"output_result1": [alice], "output_result2": [bob]},
    )  # fmt: skip


def upload(node: Node, party, data: bytes) -> bytes:
    import hashlib

    return node.upload_dataset(sign_request(party, "dataset.upload", hashlib.sha256(data).hexdigest(), data), data)


def submit(world, task: Task, *, approve: bool = True, grant: bool = True) -> bytes:
    """Upload the inputs, create the task, then every approval and grant through signed requests."""
    node, _claims, alice, bob, _ = world
    owners = {alice.party_id: alice, bob.party_id: bob}
    for slot, data in task.inputs.items():
        upload(node, owners[task.manifest.inputs[slot].owner], data)
    manifest_bytes = task.manifest.to_bytes()
    task_id = task.manifest.task_id
    node.create_task(sign_request(alice, "task.create", task_id.hex(), manifest_bytes), manifest_bytes)
    for party in task.participants if approve else ():
        signature = task.approvals[party.party_id]
        node.approve_task(sign_request(party, "task.approve", task_id.hex(), signature), task_id, signature)
    for slot, grant_ in task.grants.items() if grant else ():
        owner = owners[task.manifest.inputs[slot].owner]
        node.grant_input(sign_request(owner, "input.assign", f"{task_id.hex()}/{slot}", grant_), task_id, slot, grant_)
    return task_id


def call(node: Node, method: str, action: str, party, task_id: bytes, *args):
    return getattr(node, method)(sign_request(party, action, task_id.hex()), task_id, *args)


def status(node: Node, party, task_id: bytes) -> str:
    return call(node, "get_task", "task.view", party, task_id).status


def run(node: Node, party, task_id: bytes) -> str:
    """Invoke the task and follow it to its end; its final status."""
    assert call(node, "invoke_task", "task.invoke", party, task_id) == "Staged"
    view = call(node, "watch_task", "task.view", party, task_id)
    while not view.done:
        view = node.watch_task(sign_request(party, "task.view", task_id.hex()), task_id, after=view.status, timeout=5)
    return view.status


# --------------------------------------------------------------------------- the workflow


def test_two_party_intersection_through_the_node(world, tmp_path: Path) -> None:
    node, claims, alice, bob, _ = world
    assert mesatee.Node is Node
    task = psi(world, tmp_path)
    task_id = submit(world, task, approve=False)
    assert status(node, bob, task_id) == "DataAssigned"
    for party in task.participants:
        signature = task.approvals[party.party_id]
        node.approve_task(sign_request(party, "task.approve", task_id.hex(), signature), task_id, signature)
    assert status(node, alice, task_id) == "Approved"
    assert run(node, alice, task_id) == "Finished"
    view = call(node, "get_task", "task.view", bob, task_id)
    assert (view.status, view.has_result, view.error) == ("Finished", True, None)
    for party, slot, expected in ((alice, "output_result1", b"0101010"), (bob, "output_result2", b"01101")):
        result = TaskResult.from_bytes(call(node, "fetch_result", "output.fetch", party, task_id))
        opened = party.open_result(result, task.manifest, claims)
        assert opened.return_value == b"3 common items"
        assert dict(opened.outputs) == {slot: expected}
    node.verify_audit_log()


def test_the_enclave_identity_and_evidence_come_from_the_node(world, task_world) -> None:
    node = world[0]
    assert node.enclave_identity == task_world.enclave.identity
    assert node.evidence(bytes(32))


def test_operator_actions_are_audited(world) -> None:
    node, _claims, _alice, _bob, carol = world
    assert len(node.parties()) == 3
    node.revoke(carol.party_id)
    assert not next(p for p in node.parties() if p.party_id == carol.party_id).admitted
    with pytest.raises(RequestError) as info:
        upload(node, carol, b"x")
    assert info.value.reason == "not-admitted"
    assert node.verify_audit_log().entries == 5  # three admissions, a revocation, a refusal


# --------------------------------------------------------------------------- access rules


def test_each_access_rule_refuses_with_its_message(world, tmp_path: Path) -> None:
    node, _claims, alice, bob, carol = world
    task = psi(world, tmp_path)
    task_id = submit(world, task, grant=False)
    with pytest.raises(PermissionDeniedError, match="not a participant") as info:
        status(node, carol, task_id)
    assert info.value.rule == "task.view"
    grant = task.grants["input_data2"]
    with pytest.raises(PermissionDeniedError, match="does not own input 'input_data2'") as info:
        node.grant_input(
            sign_request(alice, "input.assign", f"{task_id.hex()}/input_data2", grant), task_id, "input_data2", grant
        )
    assert info.value.rule == "input.assign"
    with pytest.raises(PermissionDeniedError, match="not the task's creator") as info:
        call(node, "invoke_task", "task.invoke", bob, task_id)
    assert info.value.rule == "task.invoke"
    dataset_id = task.manifest.inputs["input_data1"].dataset_id
    with pytest.raises(PermissionDeniedError, match="does not own the dataset") as info:
        node.delete_dataset(sign_request(bob, "dataset.delete", dataset_id.hex()), dataset_id)
    assert info.value.rule == "dataset.delete"
    with pytest.raises(PermissionDeniedError, match="as creator"):
        manifest_bytes = task.manifest.to_bytes()
        node.create_task(sign_request(bob, "task.create", task_id.hex(), manifest_bytes), manifest_bytes)


def test_a_dataset_policy_refuses_a_task_naming_the_rule(world, tmp_path: Path) -> None:
    node, _claims, alice, bob, _ = world
    task = psi(world, tmp_path)
    dataset_id = upload(node, alice, task.inputs["input_data1"])
    policy = UsagePolicy(allowed_co_participants=frozenset()).to_bytes()
    node.set_dataset_policy(sign_request(alice, "dataset.set_policy", dataset_id.hex(), policy), dataset_id, policy)
    upload(node, bob, task.inputs["input_data2"])
    manifest_bytes = task.manifest.to_bytes()
    request = sign_request(alice, "task.create", task.manifest.task_id.hex(), manifest_bytes)
    with pytest.raises(PolicyError, match="rule co_participants") as info:
        node.create_task(request, manifest_bytes)
    assert (info.value.rule, info.value.dataset_id) == ("co_participants", dataset_id)


# --------------------------------------------------------------------------- deleting datasets


def test_a_dataset_is_deleted_only_once_no_open_task_uses_it(world, tmp_path: Path) -> None:
    node, _claims, alice, _bob, _ = world
    task = psi(world, tmp_path)
    task_id = submit(world, task)
    dataset_id = task.manifest.inputs["input_data1"].dataset_id
    with pytest.raises(NodeError, match="is an input of task"):
        node.delete_dataset(sign_request(alice, "dataset.delete", dataset_id.hex()), dataset_id)
    assert run(node, alice, task_id) == "Finished"
    node.delete_dataset(sign_request(alice, "dataset.delete", dataset_id.hex()), dataset_id)
    assert not node.blobs.exists(dataset_id.hex())


def test_deleting_a_result_removes_the_owners_outputs(world, tmp_path: Path) -> None:
    node, _claims, alice, bob, carol = world
    task = psi(world, tmp_path)
    task_id = submit(world, task)
    run(node, alice, task_id)
    assert call(node, "delete_result", "result.delete", bob, task_id) == ["output_result2"]
    result = TaskResult.from_bytes(call(node, "fetch_result", "output.fetch", alice, task_id))
    assert set(result.outputs) == {"output_result1"}
    with pytest.raises(PermissionDeniedError):
        call(node, "fetch_result", "output.fetch", carol, task_id)


# --------------------------------------------------------------------------- requests


def test_unsigned_wrongly_signed_replayed_and_mistargeted_requests_are_refused(world, tmp_path: Path) -> None:
    node, _claims, alice, bob, _ = world
    task_id = submit(world, psi(world, tmp_path))
    signed = sign_request(alice, "task.view", task_id.hex())
    for request, reason in (
        (dataclasses.replace(signed, signature=b""), "unsigned"),
        (dataclasses.replace(signed, signature=sign_request(bob, "task.view", task_id.hex()).signature), "signature"),
        (sign_request(alice, "task.cancel", task_id.hex()), "action"),
        (sign_request(alice, "task.view", "0" * 32), "target"),
    ):
        with pytest.raises(RequestError) as info:
            node.get_task(request, task_id)
        assert info.value.reason == reason
    node.get_task(signed, task_id)
    with pytest.raises(RequestError) as info:
        node.get_task(signed, task_id)
    assert info.value.reason == "replayed"
    with pytest.raises(mesatee.FormatError):
        node.create_task(sign_request(alice, "task.create", task_id.hex(), b"junk"), b"junk")
    last = list(node.db.connection().execute("SELECT action, outcome FROM audit ORDER BY seq"))[-1]
    assert last == ("task.create", "refused")
    node.verify_audit_log()


def test_a_refused_upload_leaves_no_blob(world) -> None:
    node, _claims, alice, _bob, _ = world
    data = b"ciphertext nobody signed for"
    with pytest.raises(RequestError) as info:
        node.upload_dataset(sign_request(alice, "dataset.upload", "0" * 64, b"other bytes"), data)
    assert info.value.reason == "body"
    assert list(node.blobs) == []


# --------------------------------------------------------------------------- statuses


def test_a_task_the_enclave_refuses_ends_failed_with_its_message(world, tmp_path: Path) -> None:
    node, _claims, alice, bob, _ = world
    task, other = psi(world, tmp_path / "a"), psi(world, tmp_path / "b")
    task.grants["input_data2"] = other.grants["input_data2"]  # the node cannot tell: grants are opaque to it
    task_id = submit(world, task)
    assert run(node, alice, task_id) == "Failed"
    view = call(node, "get_task", "task.view", bob, task_id)
    assert view.status == "Failed" and not view.has_result
    assert "grant" in view.error.lower()
    runs = list(node.db.connection().execute("SELECT outcome, detail FROM audit WHERE party = 'enclave'"))
    assert runs == [("refused", view.error)]


def test_illegal_status_transitions_are_refused(world, tmp_path: Path) -> None:
    node, _claims, alice, _bob, _ = world
    task_id = submit(world, psi(world, tmp_path), approve=False)
    with pytest.raises(TaskStateError, match="from DataAssigned to Staged"):
        call(node, "invoke_task", "task.invoke", alice, task_id)
    call(node, "cancel_task", "task.cancel", alice, task_id)
    assert status(node, alice, task_id) == "Canceled"
    with pytest.raises(TaskStateError, match="from Canceled to Canceled"):
        call(node, "cancel_task", "task.cancel", alice, task_id)
    finished = submit(world, psi(world, tmp_path / "f"))
    run(node, alice, finished)
    with pytest.raises(TaskStateError, match="from Finished to Staged"):
        call(node, "invoke_task", "task.invoke", alice, finished)
    with node.db.transaction() as conn, pytest.raises(TaskStateError) as info:
        transition(conn, finished, "Running")
    assert (info.value.current, info.value.target) == ("Finished", "Running")


# --------------------------------------------------------------------------- the audit log


def test_a_tampered_audit_entry_is_detected(world, tmp_path: Path) -> None:
    node, _claims, alice, _bob, _ = world
    task_id = submit(world, psi(world, tmp_path))
    run(node, alice, task_id)
    head = node.verify_audit_log()
    raw = sqlite3.connect(node.path / "node.db")
    raw.execute("DROP TRIGGER audit_no_update")
    raw.execute("UPDATE audit SET detail = 'nothing happened' WHERE seq = 5")
    raw.commit()
    raw.close()
    with pytest.raises(AuditLogError) as info:
        node.verify_audit_log()
    assert info.value.seq == 5 and head.entries > 5


def test_without_an_enclave_the_node_opens_its_own_on_its_state_file(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MESATEE_HOME", str(tmp_path / "home"))
    with Node(tmp_path / "node") as node:
        identity = node.enclave_identity
        assert (tmp_path / "node" / "enclave.state").exists() and (tmp_path / "home").is_dir()
    with Node(tmp_path / "node") as node:
        assert node.enclave_identity.mrenclave == identity.mrenclave
        assert node.evidence(bytes(32))


def test_a_node_opened_on_another_platform_says_so(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MESATEE_HOME", str(tmp_path / "home"))
    with Node(tmp_path / "node", workers=0) as node:
        node.enclave_identity  # noqa: B018 - creates the sealed state
    monkeypatch.setenv("MESATEE_HOME", str(tmp_path / "elsewhere"))
    with Node(tmp_path / "node", workers=0) as node, pytest.raises(mesatee.SealingError, match="another MESATEE_HOME"):
        node.enclave_identity  # noqa: B018
