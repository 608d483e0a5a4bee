"""Streamed downloads of outputs: a result's head, then each output's ciphertext, hashed and decrypted to a file."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Any, BinaryIO

import pytest

import mesatee
from mesatee.core import files
from mesatee.core.manifest import ResultHead
from mesatee.errors import CryptoError, FormatError, NotFoundError, PermissionDeniedError, RequestError, StorageError
from mesatee.node import sign_request
from node_host import NodeWorld

LINES = 100_000  # about 3.3 MB of items in each input, all of them common: each output is as large


def large_intersection(world: NodeWorld) -> tuple[bytes, bytes]:
    """A finished private_set_intersection whose outputs (output_data0: alice's, output_data1: bob's) are a few MB."""
    alice, bob = world.client("alice"), world.client("bob")
    items = b"".join(b"%012d-abcdefghijklmnopqrst\n" % i for i in range(LINES))
    a, b = world.parties["alice"].identity, world.parties["bob"].identity
    manifest = alice.new_manifest(
        "private_set_intersection",
        inputs={"input_data0": (a, alice.encrypt_and_upload(items)), "input_data1": (b, bob.encrypt_and_upload(items))},
        outputs={"output_data0": [a], "output_data1": [b]},
    )
    task_id = alice.create_task(manifest)
    for client in (alice, bob):
        client.grant(task_id)
        client.approve(task_id)
    alice.invoke(task_id)
    assert alice.wait(task_id, 60).status == "Finished"
    return task_id, items


def blob_of(world: NodeWorld, task_id: bytes, slot: str) -> str:
    row = (
        world.node.db.connection()
        .execute("SELECT blob_id FROM result_outputs WHERE task_id = ? AND slot = ?", (task_id, slot))
        .fetchone()
    )
    return row[0]


def test_a_large_output_streams_to_a_file(node_world: NodeWorld, tmp_path: Path) -> None:
    alice, bob = node_world.client("alice"), node_world.client("bob")
    task_id, items = large_intersection(node_world)
    opened = alice.result(task_id, output_dir=tmp_path / "out")
    path = tmp_path / "out" / "output_data0"
    assert dict(opened.files) == {"output_data0": path} and dict(opened.outputs) == {} and not opened.missing
    assert opened.return_value == b"%d common items" % LINES
    assert path.read_bytes() == items and path.stat().st_mode & 0o777 == 0o600
    assert os.listdir(tmp_path / "out") == ["output_data0"]  # no temporary file left
    assert bob.result(task_id).outputs["output_data1"] == items  # inline, as before
    request = sign_request(node_world.parties["bob"], "output.fetch", task_id.hex())
    head = ResultHead.from_bytes(node_world.api.fetch_result_head(request, task_id))
    sizes = {slot: node_world.node.blobs.size(blob_of(node_world, task_id, slot)) for slot in head.outputs}
    assert sorted(head.outputs) == ["output_data0", "output_data1"]
    assert {slot: info.size for slot, info in head.outputs.items()} == sizes
    bob.delete_result(task_id)
    opened = bob.result(task_id, output_dir=tmp_path / "bob")
    assert opened.missing == {"output_data1"} and dict(opened.files) == {} and not (tmp_path / "bob").exists()
    node_world.node.verify_audit_log()


def test_a_tampered_output_is_refused_and_leaves_no_file(node_world: NodeWorld, tmp_path: Path) -> None:
    alice = node_world.client("alice")
    task_id, _items = large_intersection(node_world)
    out = tmp_path / "out"
    out.mkdir()
    (out / "output_data0").write_bytes(b"an older file")
    blob = node_world.node.blobs.path(blob_of(node_world, task_id, "output_data0"))
    damaged = bytearray(blob.read_bytes())
    damaged[len(damaged) // 2] ^= 1
    blob.write_bytes(damaged)
    with pytest.raises(StorageError, match="corrupted"):
        alice.result(task_id, output_dir=out)
    assert os.listdir(out) == ["output_data0"] and (out / "output_data0").read_bytes() == b"an older file"


class SwappingNode:
    """A node that serves another output's (intact) ciphertext for every output asked for."""

    def __init__(self, world: NodeWorld, task_id: bytes, slot: str) -> None:
        self._api, self._blobs, self._blob = world.api, world.node.blobs, blob_of(world, task_id, slot)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._api, name)

    def open_output(self, request: object, task_id: bytes, slot: str) -> BinaryIO:
        return self._blobs.open(self._blob)  # type: ignore[return-value]


def test_an_output_swapped_by_the_node_is_refused(node_world: NodeWorld, tmp_path: Path) -> None:
    task_id, _items = large_intersection(node_world)
    swapped = mesatee.Client(
        SwappingNode(node_world, task_id, "output_data1"), node_world.parties["alice"], node_world.policy
    )
    with pytest.raises(CryptoError):  # bob's file under alice's key: the first chunk fails authentication
        swapped.result(task_id, output_dir=tmp_path / "out")
    assert os.listdir(tmp_path / "out") == []


def test_who_may_download_what(node_world: NodeWorld) -> None:
    task_id, _items = large_intersection(node_world)
    api, parties = node_world.api, node_world.parties
    target = f"{task_id.hex()}/output_data0"
    with api.open_output(sign_request(parties["alice"], "output.fetch", target), task_id, "output_data0") as stream:
        assert hashlib.sha256(stream.read()).hexdigest() == blob_of(node_world, task_id, "output_data0")
    with pytest.raises(PermissionDeniedError, match="does not own output"):  # a participant, not an owner
        api.open_output(sign_request(parties["bob"], "output.fetch", target), task_id, "output_data0")
    with pytest.raises(PermissionDeniedError, match="not a participant"):
        api.fetch_result_head(sign_request(parties["carol"], "output.fetch", task_id.hex()), task_id)
    with pytest.raises(RequestError, match="target"):
        api.open_output(sign_request(parties["alice"], "output.fetch", target), task_id, "output_data1")
    with pytest.raises(NotFoundError, match="no output"):
        api.open_output(sign_request(parties["alice"], "output.fetch", f"{task_id.hex()}/x"), task_id, "x")


def test_decrypt_to_file_checks_the_digest_and_the_size(tmp_path: Path) -> None:
    key = os.urandom(files.KEY_SIZE)
    sealed = files.encrypt_bytes(b"secret" * 10_000, key, chunk_size=4096)
    digest = hashlib.sha256(sealed).digest()
    target = tmp_path / "out"
    assert files.decrypt_to_file(io.BytesIO(sealed), target, key, digest=digest, max_size=len(sealed)) == 60_000
    assert target.read_bytes() == b"secret" * 10_000
    target.unlink()
    with pytest.raises(CryptoError, match="expected digest"):
        files.decrypt_to_file(io.BytesIO(sealed), target, key, digest=bytes(32))
    with pytest.raises(FormatError, match="longer than"):
        files.decrypt_to_file(io.BytesIO(sealed), target, key, digest=digest, max_size=len(sealed) - 1)
    assert os.listdir(tmp_path) == []
