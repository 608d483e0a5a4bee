"""Resumable, streamed dataset uploads: a dropped connection or a killed server leaves no dataset, only staged
bytes that the next attempt continues from; the staging area's rules and limits."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mesatee.core import canonical
from mesatee.errors import InvalidArgumentError, NodeError, NotFoundError, PermissionDeniedError, RequestError
from mesatee.node import remote as remote_module
from mesatee.node import sign_request
from mesatee.node.remote import REQUEST_HEADER, RemoteNode
from mesatee.service.uploads import UploadStaging
from node_host import NodeWorld, ServiceProcess, served_world, start_service

MAX_UPLOAD = 8 << 20


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[NodeWorld, ServiceProcess]]:
    monkeypatch.setenv("MESATEE_HOME", str(tmp_path / "home"))
    with served_world(tmp_path / "node", workers=1, max_upload=MAX_UPLOAD, max_uploads_per_party=2) as served:
        yield served


def _upload_request(world: NodeWorld, data: bytes, party: str = "alice"):
    digest = hashlib.sha256(data).digest()
    return sign_request(world.parties[party], "dataset.upload", digest.hex(), body_digest=digest)


def _open(service: ServiceProcess, request, size: int, format: str = "mesatee-v1") -> httpx.Response:
    return httpx.post(
        f"{service.url}/v1/uploads",
        headers={REQUEST_HEADER: base64.b64encode(request.to_bytes()).decode(), "Content-Type": "application/msgpack"},
        content=canonical.encode({"size": size, "format": format}),
    )


def _datasets(world: NodeWorld) -> list[bytes]:
    return [row[0] for row in world.node.db.connection().execute("SELECT dataset_id FROM datasets")]


def _staged(world: NodeWorld) -> list[str]:
    return sorted(p.name for p in (world.node.path / "uploads").iterdir() if not p.name.startswith("."))


def _send_part_and_drop(service: ServiceProcess, upload_id: str, declared: int, sent: bytes) -> None:
    """A client that announces ``declared`` bytes, sends ``sent`` and disconnects."""
    host, port = service.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as raw:
        raw.sendall(
            f"PUT /v1/uploads/{upload_id}?offset=0 HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
            f"Content-Length: {declared}\r\n\r\n".encode()
            + sent
        )
        time.sleep(0.3)


def test_a_dropped_upload_is_no_dataset_and_the_next_attempt_resumes_it(
    served: tuple[NodeWorld, ServiceProcess], monkeypatch: pytest.MonkeyPatch
) -> None:
    world, service = served
    data = os.urandom(3 << 20)
    session = canonical.decode(_open(service, _upload_request(world, data), len(data)).content, max_size=4096)
    _send_part_and_drop(service, session["upload_id"], len(data), data[: 1 << 20])
    assert _datasets(world) == []
    staged = httpx.get(f"{service.url}/v1/uploads/{session['upload_id']}")
    assert canonical.decode(staged.content, max_size=4096) == {"offset": 1 << 20, "size": len(data)}
    sent: list[int] = []
    real_pieces = remote_module._pieces
    monkeypatch.setattr(remote_module, "_pieces", lambda stream, n: (sent.append(n), real_pieces(stream, n))[1])
    dataset_id = world.api.upload_dataset(_upload_request(world, data), data)
    assert sent == [len(data) - (1 << 20)]  # only what the service lacked
    assert dataset_id == hashlib.sha256(data).digest() and _datasets(world) == [dataset_id]
    assert world.node.blobs.get(dataset_id.hex()) == data
    assert _staged(world) == []


def test_a_server_killed_mid_upload_shows_no_dataset_and_the_upload_resumes_after_restart(
    served: tuple[NodeWorld, ServiceProcess],
) -> None:
    world, service = served
    data = os.urandom(MAX_UPLOAD)

    class Slow(io.BytesIO):  # a sender slower than the disk, so the kill lands mid-upload
        def read(self, n: int | None = -1) -> bytes:
            time.sleep(0.05)
            return super().read(n)

    outcome: dict[str, object] = {}

    def upload() -> None:
        try:
            outcome["dataset"] = world.api.upload_dataset(_upload_request(world, data), Slow(data))
        except Exception as exc:  # reported below
            outcome["error"] = exc

    uploader = threading.Thread(target=upload)
    uploader.start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        parts = list((world.node.path / "uploads").glob("*.part"))
        if parts and parts[0].stat().st_size >= 2 << 20:
            break
        time.sleep(0.02)
    service.kill()
    assert _datasets(world) == []  # the staged bytes are no dataset
    (part,) = (world.node.path / "uploads").glob("*.part")
    assert 0 < part.stat().st_size < len(data)
    port = int(service.url.rsplit(":", 1)[1])
    restarted = start_service(world.node.path, workers=1, port=port, max_upload=MAX_UPLOAD)
    try:
        uploader.join(60)
        assert outcome.get("dataset") == hashlib.sha256(data).digest(), outcome
        assert _datasets(world) == [outcome["dataset"]] and _staged(world) == []
        assert world.node.blobs.get(hashlib.sha256(data).hexdigest()) == data
    finally:
        restarted.stop()


def test_upload_sessions_are_bounded_and_bound_to_their_party_and_bytes(
    served: tuple[NodeWorld, ServiceProcess],
) -> None:
    world, service = served
    data = os.urandom(1000)
    too_big = _open(service, _upload_request(world, data), MAX_UPLOAD + 1)
    assert too_big.status_code == 413 and "\n" not in too_big.text
    assert _open(service, sign_request(world.parties["alice"], "dataset.list", ""), 10).json()["attributes"] == {
        "reason": "action"
    }
    stale = sign_request(world.parties["alice"], "dataset.upload", "00" * 32, body_digest=bytes(32), now=1)
    assert _open(service, stale, 10).json()["attributes"] == {"reason": "stale"}
    stranger = sign_request(world.parties["alice"], "dataset.upload", "", body_digest=bytes(32))
    forged = sign_request(world.parties["bob"], "dataset.upload", "", body_digest=bytes(32))
    forged = type(forged)(**{**forged.__dict__, "party_id": stranger.party_id})
    assert _open(service, forged, 10).json()["attributes"] == {"reason": "signature"}

    session = canonical.decode(_open(service, _upload_request(world, data), len(data)).content, max_size=4096)
    path = f"{service.url}/v1/uploads/{session['upload_id']}"
    octets = {"Content-Type": "application/octet-stream"}
    assert httpx.put(path, params={"offset": 0}, headers=octets, content=data + b"x").status_code == 413
    assert "holds 0 bytes" in httpx.put(path, params={"offset": 5}, headers=octets, content=data[:10]).json()["error"]
    assert httpx.put(path, params={"offset": 0}, content=data).status_code == 415
    with pytest.raises(InvalidArgumentError, match="incomplete"):
        world.api._call("POST", f"/uploads/{session['upload_id']}/commit", _upload_request(world, data), {})
    bob_request = _upload_request(world, data, "bob")
    with pytest.raises(PermissionDeniedError, match="another party's"):
        world.api._call("POST", f"/uploads/{session['upload_id']}/commit", bob_request, {})
    with pytest.raises(NotFoundError):
        world.api._call("GET", f"/uploads/{'f' * 32}", None, {})
    with pytest.raises(NotFoundError):
        world.api._call("GET", "/uploads/..%2F..%2Fnode.db", None, {})

    _open(service, _upload_request(world, b"second"), 6)
    with pytest.raises(NodeError, match="2 uploads open"):
        world.api._call("POST", "/uploads", _upload_request(world, b"third"), {}, fields={"size": 5, "format": "x"})

    wrong = bytes(len(data))  # staged bytes that are not the signed ones: refused by the node, the session dropped
    assert httpx.put(path, params={"offset": 0}, headers=octets, content=wrong).status_code == 200
    with pytest.raises(RequestError) as caught:
        world.api._call("POST", f"/uploads/{session['upload_id']}/commit", _upload_request(world, data), {})
    assert caught.value.reason == "body"
    assert httpx.get(path).status_code == 404 and _datasets(world) == []
    assert world.api.upload_dataset(_upload_request(world, data), data) == hashlib.sha256(data).digest()


def test_a_commit_refused_for_its_request_keeps_the_staged_bytes_and_a_retry_adopts_them(
    served: tuple[NodeWorld, ServiceProcess],
) -> None:
    world, service = served
    data = os.urandom(2 << 20)
    digest = hashlib.sha256(data).digest()
    session = canonical.decode(_open(service, _upload_request(world, data), len(data)).content, max_size=4096)
    path = f"{service.url}/v1/uploads/{session['upload_id']}"
    octets = {"Content-Type": "application/octet-stream"}
    assert httpx.put(path, params={"offset": 0}, headers=octets, content=data).status_code == 200
    stale = sign_request(world.parties["alice"], "dataset.upload", digest.hex(), body_digest=digest, now=1)
    with pytest.raises(RequestError) as caught:
        world.api._call("POST", f"/uploads/{session['upload_id']}/commit", stale, {})
    assert caught.value.reason == "stale"
    assert _datasets(world) == [] and not world.node.blobs.exists(digest.hex())
    assert canonical.decode(httpx.get(path).content, max_size=4096) == {"offset": len(data), "size": len(data)}

    committed = world.api._call(
        "POST", f"/uploads/{session['upload_id']}/commit", _upload_request(world, data), {"dataset_id": bytes}
    )
    assert committed["dataset_id"] == digest and _datasets(world) == [digest]
    blob = world.node.blobs.path(digest.hex())
    assert blob.read_bytes() == data and blob.stat().st_nlink == 1  # the staged file itself, its staging name gone
    assert _staged(world) == [] and not list(world.node.blobs.folder.glob(".tmp-*"))


def test_an_unseekable_stream_uploads(served: tuple[NodeWorld, ServiceProcess]) -> None:
    world, _service = served
    data = os.urandom(2 << 20)
    read_end, write_end = os.pipe()
    writer = threading.Thread(target=lambda: (os.write(write_end, data), os.close(write_end)))
    writer.start()
    with open(read_end, "rb", buffering=0) as pipe:
        assert world.api.upload_dataset(_upload_request(world, data), pipe) == hashlib.sha256(data).digest()
    writer.join()


def test_idle_sessions_and_leftovers_expire(tmp_path: Path) -> None:
    staging = UploadStaging(tmp_path / "uploads", max_size=100, max_sessions=4, per_party=4, ttl=0.2)
    session, offset = staging.open(bytes(32), bytes(32), 10, "mesatee-v1")
    assert offset == 0 and staging.open(bytes(32), bytes(32), 10, "mesatee-v1")[0] == session
    with pytest.raises(InvalidArgumentError, match="was opened for 10 bytes"):
        staging.open(bytes(32), bytes(32), 11, "mesatee-v1")
    (tmp_path / "uploads" / ("a" * 32 + ".part")).write_bytes(b"orphan")
    (tmp_path / "uploads" / ("b" * 32 + ".meta-new")).write_bytes(b"half written")
    assert staging.expire() == 1  # the orphan part; the live session stays
    with staging.appending(session, 0) as part:
        part.write(b"12345")
        with pytest.raises(NodeError, match="busy"), staging.appending(session, 5):
            pass
    time.sleep(0.3)
    assert staging.expire() == 1
    assert sorted(p.name for p in (tmp_path / "uploads").iterdir()) == [".lock"]
    with pytest.raises(NotFoundError):
        staging.session(session.upload_id)


@pytest.mark.parametrize("offset", [-4, 100])
def test_an_upload_offset_out_of_range_from_the_node_is_refused(offset: int) -> None:
    """The node is untrusted: an offset before the upload's start would make the client send bytes of its stream
    it was never asked to (here a secret before the ciphertext), one past its end would skip the bytes."""
    from mesatee.errors import FormatError
    from mesatee.parties import Party

    sent: list[bytes] = []

    def lying(request: httpx.Request) -> httpx.Response:
        sent.append(request.read())
        if request.method == "POST" and request.url.path == "/v1/uploads":
            answer = {"upload_id": "ab" * 16, "offset": offset, "size": 10}
            return httpx.Response(200, content=canonical.encode(answer))
        return httpx.Response(200, content=canonical.encode({"offset": 10, "dataset_id": bytes(32)}))

    node = RemoteNode("http://node.invalid")
    node._http = httpx.Client(base_url="http://node.invalid/v1", transport=httpx.MockTransport(lying))
    stream = io.BytesIO(b"SECRciphertext")
    stream.seek(4)
    request = sign_request(Party.generate(), "dataset.upload", "00" * 32, body_digest=bytes(32))
    with pytest.raises(FormatError, match="offset"):
        node.upload_dataset(request, stream)
    assert not any(b"SECR" in body for body in sent) and len(sent) == 1
