"""A party's Client of a node: whole workflows with every request signed for it, enclave verified first."""

from __future__ import annotations

import dataclasses

import pytest

import mesatee
from conftest import REPO
from mesatee.errors import AttestationError, PolicyError, TaskStateError
from mesatee.node import UsagePolicy
from node_host import NodeWorld

TEACLAVE = REPO.parent / "shared" / "fixtures" / "teaclave" / "ordered_set_intersect"


def intersection(world: NodeWorld) -> tuple[bytes, object]:
    alice, bob = world.client("alice"), world.client("bob")
    data1 = alice.encrypt_and_upload(TEACLAVE / "psi0.txt")
    data2 = bob.encrypt_and_upload((TEACLAVE / "psi1.txt").read_bytes())
    a, b = world.parties["alice"].identity, world.parties["bob"].identity
    manifest = alice.new_manifest(
        "ordered_set_intersect",
        inputs={"input_data1": (a, data1), "input_data2": (b, data2)},
        outputs={"output_result1": [a], "output_result2": [b]},
    )
    task_id = alice.create_task(manifest)
    return task_id, manifest


def test_two_parties_intersect_through_their_clients(node_world: NodeWorld) -> None:
    alice, bob = node_world.client("alice"), node_world.client("bob")
    assert mesatee.Client is type(alice)
    task_id, manifest = intersection(node_world)
    assert alice.task(task_id).status == "Created"
    assert alice.grant(task_id) == ["input_data1"] and bob.grant(task_id) == ["input_data2"]
    assert bob.task(task_id).status == "DataAssigned"
    alice.approve(manifest)
    bob.approve(task_id)
    assert alice.task(task_id).status == "Approved"
    seen: list[str] = []
    assert alice.invoke(task_id) == "Staged"
    view = alice.wait(task_id, 30, on_progress=lambda v: seen.append(v.status))
    assert view.status == "Finished" and view.has_result and view.attempts == 1
    assert seen[-1] == "Finished" and set(seen) <= {"Staged", "Running", "Finished"}
    for client, slot, expected in ((alice, "output_result1", b"0101010"), (bob, "output_result2", b"01101")):
        opened = client.result(task_id)
        assert opened.return_value == b"3 common items"
        assert dict(opened.outputs) == {slot: expected}
    assert [t.task_id for t in bob.tasks()] == [task_id]
    assert node_world.client("carol").tasks() == []
    node_world.node.verify_audit_log()


def test_a_dataset_policy_set_through_the_client_refuses_a_task(node_world: NodeWorld) -> None:
    alice, bob = node_world.client("alice"), node_world.client("bob")
    dataset_id = bob.encrypt_and_upload(b"1\n2\n")
    bob.set_policy(dataset_id, UsagePolicy(allowed_functions=("ordered_set_join",)))
    (listed,) = bob.datasets()
    assert listed.dataset_id == dataset_id and listed.policy == UsagePolicy(allowed_functions=("ordered_set_join",))
    assert alice.datasets() == []
    mine = alice.encrypt_and_upload(b"1\n3\n")
    a, b = node_world.parties["alice"].identity, node_world.parties["bob"].identity
    manifest = alice.new_manifest(
        "ordered_set_intersect",
        inputs={"input_data1": (a, mine), "input_data2": (b, dataset_id)},
        outputs={"output_result1": [a], "output_result2": [b]},
    )
    with pytest.raises(PolicyError, match="rule function:"):
        alice.create_task(manifest)
    bob.delete_dataset(dataset_id)
    assert bob.datasets() == []


def test_waiting_cancelling_and_a_failed_task(node_world: NodeWorld) -> None:
    alice, bob = node_world.client("alice"), node_world.client("bob")
    task_id = node_world.echo()
    with pytest.raises(TimeoutError, match="still Approved"):
        alice.wait(task_id, 0.2)
    alice.cancel(task_id)
    assert bob.wait(task_id, 5).status == "Canceled"
    with pytest.raises(TaskStateError, match="is Canceled"):
        bob.result(task_id)
    opened = alice.run(node_world.echo(message="once more"), timeout=30)
    assert opened.return_value == b"once more"


def test_the_client_refuses_an_enclave_its_policy_does_not_accept(node_world: NodeWorld) -> None:
    alice = node_world.client("alice")
    task_id, _manifest = intersection(node_world)
    strict = mesatee.Client(
        node_world.api, node_world.parties["alice"], dataclasses.replace(node_world.policy, mrenclave=bytes(32))
    )
    with pytest.raises(AttestationError):
        strict.grant(task_id)
    assert alice.task(task_id).assigned == frozenset()


def test_deleting_results(node_world: NodeWorld) -> None:
    alice, bob = node_world.client("alice"), node_world.client("bob")
    task_id, _manifest = intersection(node_world)
    for client in (alice, bob):
        client.grant(task_id)
        client.approve(task_id)
    alice.run(task_id, timeout=30)
    assert bob.delete_result(task_id) == ["output_result2"]
    assert dict(alice.result(task_id).outputs) == {"output_result1": b"0101010"}
    opened = bob.result(task_id)
    assert dict(opened.outputs) == {} and opened.missing == {"output_result2"}


def test_a_teaclave_encrypted_dataset_is_a_task_input(node_world: NodeWorld) -> None:
    """A file encrypted as Teaclave did (AES-GCM, key and IV): uploaded as it is, named with its format."""
    import os

    from mesatee.core.files import FORMAT_TEACLAVE_128, teaclave_encrypt

    alice, bob = node_world.client("alice"), node_world.client("bob")
    key, iv = os.urandom(16), os.urandom(12)
    ciphertext = teaclave_encrypt((TEACLAVE / "psi0.txt").read_bytes(), key, iv)
    data1 = alice.upload_dataset(ciphertext, format=FORMAT_TEACLAVE_128)
    node_world.parties["alice"].add_dataset_key(data1, key, iv=iv, format=FORMAT_TEACLAVE_128)
    data2 = bob.encrypt_and_upload(TEACLAVE / "psi1.txt")
    a, b = node_world.parties["alice"].identity, node_world.parties["bob"].identity
    manifest = alice.new_manifest(
        "ordered_set_intersect",
        inputs={"input_data1": (a, data1, FORMAT_TEACLAVE_128), "input_data2": (b, data2)},
        outputs={"output_result1": [a], "output_result2": [b]},
    )
    task_id = alice.create_task(manifest)
    for client in (alice, bob):
        client.grant(task_id)
        client.approve(task_id)
    assert dict(alice.run(task_id, timeout=30).outputs) == {"output_result1": b"0101010"}


class ReplayingNode:
    """A dishonest node that answers every question about one task with another (finished) task's answers."""

    def __init__(self, world: NodeWorld, asked: bytes, served: bytes) -> None:
        self._api, self._asked, self._served = world.api, asked, served
        sign = mesatee.node.sign_request
        alice = world.parties["alice"]
        self._view = world.api.get_task(sign(alice, "task.view", served.hex()), served)
        self._result = world.api.fetch_result(sign(alice, "output.fetch", served.hex()), served)
        self._head = world.api.fetch_result_head(sign(alice, "output.fetch", served.hex()), served)

    def __getattr__(self, name: str) -> object:
        return getattr(self._api, name)

    def get_task(self, request: object, task_id: bytes) -> object:
        return self._view if task_id == self._asked else self._api.get_task(request, task_id)

    def watch_task(self, request: object, task_id: bytes, **options: object) -> object:
        return self._view if task_id == self._asked else self._api.watch_task(request, task_id, **options)

    def fetch_result(self, request: object, task_id: bytes) -> bytes:
        return self._result

    def fetch_result_head(self, request: object, task_id: bytes) -> bytes:
        return self._head


def test_the_client_refuses_another_tasks_view_and_result(node_world: NodeWorld) -> None:
    """A node cannot pass an older task (and its genuine receipt) off as the one the party asked for."""
    from mesatee.errors import FormatError

    alice = node_world.client("alice")
    first = node_world.echo(message="first")
    assert alice.run(first, timeout=30).return_value == b"first"
    second = node_world.echo(message="second")
    lying = mesatee.Client(ReplayingNode(node_world, second, first), node_world.parties["alice"], node_world.policy)
    for call in (
        lambda: lying.task(second),
        lambda: lying.wait(second, 5),
        lambda: lying.result(second),
        lambda: lying.result(second, wait=5),
    ):
        with pytest.raises(FormatError, match="another task"):
            call()
    with pytest.raises(FormatError, match="another task"):
        lying.approve(second)  # nor approve a manifest the party did not name
