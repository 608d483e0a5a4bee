"""The service's transport: bad input refused in one line of JSON, refusals rebuilt as the same exceptions,
methods and paths bound to their actions, TLS rules, OpenAPI.

One service (a subprocess on 127.0.0.1, small body limit) serves every test of this module.
"""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import mesatee
from mesatee.core import canonical
from mesatee.errors import (
    InvalidArgumentError,
    MesateeError,
    NotFoundError,
    PermissionDeniedError,
    PolicyError,
    RequestError,
    TaskStateError,
)
from mesatee.node import UsagePolicy, sign_request
from mesatee.node.remote import REQUEST_HEADER, RemoteNode, error_body, error_from_body
from mesatee.service import check_transport, serve
from node_host import NodeWorld, ServiceProcess, served_world

MAX_BODY = 4096


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NodeWorld, ServiceProcess]]:
    folder = tmp_path_factory.mktemp("service")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MESATEE_HOME", str(folder / "home"))
        with served_world(folder / "node", workers=1, max_body=MAX_BODY) as served:
            yield served


def _refused(answer: httpx.Response, code: int) -> str:
    assert answer.status_code == code, answer.text
    assert answer.headers["content-type"] == "application/json"
    assert "\n" not in answer.text
    body = json.loads(answer.text)
    assert isinstance(body["error"], str) and body["error"]
    return body["error"]


def _header(world: NodeWorld, action: str, target: str, body: bytes = b"") -> dict[str, str]:
    request = sign_request(world.parties["alice"], action, target, body)
    return {REQUEST_HEADER: base64.b64encode(request.to_bytes()).decode()}


def test_bad_input_gets_a_4xx_and_one_line_of_json(served: tuple[NodeWorld, ServiceProcess]) -> None:
    world, service = served
    v1 = f"{service.url}/v1"
    task = "00" * 16
    signed = _header(world, "task.create", task)
    msgpack = {"Content-Type": "application/msgpack"}
    assert "no route" in _refused(httpx.get(f"{v1}/nope"), 404)
    assert "no route" in _refused(httpx.get(f"{service.url}/"), 404)
    _refused(httpx.delete(f"{v1}/tasks"), 405)
    _refused(httpx.put(f"{v1}/evidence"), 405)
    assert "msgpack" in _refused(httpx.post(f"{v1}/tasks", headers={**signed, **msgpack}, content=b"\xc1"), 400)
    non_canonical = b"\x81\xa8manifest\xc5\x00\x01x"  # bin 16 where bin 8 fits
    _refused(httpx.post(f"{v1}/tasks", headers={**signed, **msgpack}, content=non_canonical), 400)
    wrong_fields = canonical.encode({"manifest": "text"})
    assert "manifest" in _refused(httpx.post(f"{v1}/tasks", headers={**signed, **msgpack}, content=wrong_fields), 400)
    json_body = {**signed, "Content-Type": "application/json"}
    assert "application/msgpack" in _refused(httpx.post(f"{v1}/tasks", headers=json_body, content=b"{}"), 415)
    _refused(httpx.post(f"{v1}/tasks", headers=signed, content=b"x"), 415)
    big = canonical.encode({"manifest": bytes(MAX_BODY)})
    assert "limit" in _refused(httpx.post(f"{v1}/tasks", headers={**signed, **msgpack}, content=big), 413)
    chunked = iter([big[:100], big[100:]])  # no Content-Length: counted as it streams
    _refused(httpx.post(f"{v1}/tasks", headers={**signed, **msgpack}, content=chunked), 413)
    assert "header" in _refused(httpx.get(f"{v1}/tasks"), 401)
    assert "base64" in _refused(httpx.get(f"{v1}/tasks", headers={REQUEST_HEADER: "not base64!"}), 400)
    assert "malformed" in _refused(httpx.get(f"{v1}/tasks", headers={REQUEST_HEADER: "AAAA"}), 400)
    _refused(httpx.get(f"{v1}/tasks", headers={REQUEST_HEADER: "A" * 10_000}), 400)
    assert "hex" in _refused(httpx.get(f"{v1}/tasks/xyz", headers=_header(world, "task.view", "xyz")), 400)
    assert "hex" in _refused(httpx.get(f"{v1}/evidence", params={"nonce": "00" * 65}), 400)
    _refused(httpx.get(f"{v1}/evidence"), 400)
    _refused(httpx.put(f"{v1}/uploads/{'0' * 32}", params={"offset": "x"}), 400)
    assert "no body" in _refused(httpx.request("GET", f"{v1}/tasks", headers=signed, content=b"x"), 400)
    # A raw request that is not HTTP at all: the connection is closed, the server goes on.
    host, port = service.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as raw:
        raw.sendall(b"\x00\xffnot http\r\n\r\n")
        raw.recv(4096)
    # Unharmed: it still serves a whole workflow.
    assert httpx.get(f"{v1}/health").status_code == 200
    assert world.client("alice").run(world.echo(message="still here"), timeout=30).return_value == b"still here"


def test_refusals_are_the_same_exceptions_as_in_process(served: tuple[NodeWorld, ServiceProcess]) -> None:
    world, _service = served
    node, remote = world.node, world.api
    alice, bob = world.parties["alice"], world.parties["bob"]

    def both(call) -> tuple[MesateeError, MesateeError]:
        errors = []
        for api in (node, remote):
            with pytest.raises(MesateeError) as caught:
                call(api)
            errors.append(caught.value)
        return errors[0], errors[1]

    def same(local: MesateeError, far: MesateeError, *attributes: str) -> None:
        assert type(far) is type(local) and str(far) == str(local) and far.status == local.status
        for name in attributes:
            assert getattr(far, name) == getattr(local, name), name

    task = bytes(16)
    local, far = both(lambda api: api.get_task(sign_request(alice, "task.view", task.hex()), task))
    same(local, far)
    assert isinstance(far, NotFoundError)
    replay = sign_request(alice, "dataset.list", "")
    world.api.list_datasets(replay)
    local, far = both(lambda api: api.list_datasets(replay))
    same(local, far, "reason")
    assert far.reason == "replayed"
    local, far = both(lambda api: api.list_tasks(sign_request(alice, "dataset.list", "")))
    same(local, far, "reason")
    assert far.reason == "action"

    dataset = world.client("bob").encrypt_and_upload(b"1\n2\n")
    world.client("bob").set_policy(dataset, UsagePolicy(allowed_functions=("ordered_set_join",)))
    mine = world.client("alice").encrypt_and_upload(b"1\n3\n")
    manifest = world.client("alice").new_manifest(
        "ordered_set_intersect",
        inputs={"input_data1": (alice.identity, mine), "input_data2": (bob.identity, dataset)},
        outputs={"output_result1": [alice.identity], "output_result2": [bob.identity]},
    )
    body = manifest.to_bytes()
    create = manifest.task_id.hex()
    local, far = both(lambda api: api.create_task(sign_request(alice, "task.create", create, body), body))
    same(local, far, "rule", "dataset_id")
    assert isinstance(far, PolicyError) and far.dataset_id == dataset

    task_id = world.echo()
    local, far = both(lambda api: api.cancel_task(sign_request(bob, "task.cancel", task_id.hex()), task_id))
    same(local, far, "rule")
    assert isinstance(far, PermissionDeniedError)
    world.client("alice").cancel(task_id)
    local, far = both(lambda api: api.cancel_task(sign_request(alice, "task.cancel", task_id.hex()), task_id))
    same(local, far, "current", "target")
    assert isinstance(far, TaskStateError) and far.current == "Canceled"
    local, far = both(lambda api: api.watch_task(sign_request(alice, "task.view", task_id.hex()), task_id, timeout=99))
    same(local, far)
    assert isinstance(far, InvalidArgumentError)


def test_a_request_cannot_be_sent_to_another_route(served: tuple[NodeWorld, ServiceProcess]) -> None:
    """Each route calls one node method, which serves one action: a request signed for another is refused."""
    world, _service = served
    task_id = world.echo()
    cancel = sign_request(world.parties["alice"], "task.cancel", task_id.hex())
    with pytest.raises(RequestError, match=r"signed for action 'task\.cancel', not 'task\.invoke'") as caught:
        world.api.invoke_task(cancel, task_id)
    assert caught.value.reason == "action"
    other = world.echo()
    invoke = sign_request(world.parties["alice"], "task.invoke", task_id.hex())
    with pytest.raises(RequestError, match="target") as caught:
        world.api.invoke_task(invoke, other)  # the path names another task than the signed target
    assert caught.value.reason == "target"
    last = world.node.db.connection().execute("SELECT outcome, detail FROM audit ORDER BY seq DESC LIMIT 1")
    assert [(outcome, "target" in detail) for outcome, detail in last] == [("refused", True)]  # audited by the node


def test_a_client_given_the_url_verifies_the_enclave_and_runs_a_task(served: tuple[NodeWorld, ServiceProcess]) -> None:
    world, service = served
    alice = mesatee.Client(service.url, world.parties["alice"], world.policy)
    assert repr(alice.node) == f"RemoteNode({service.url!r})"
    assert alice.verify_enclave().mrenclave == world.node.enclave_identity.mrenclave
    world.clients["alice"] = alice
    assert alice.run(world.echo(message="by url"), timeout=30).return_value == b"by url"


def test_openapi_is_served(served: tuple[NodeWorld, ServiceProcess]) -> None:
    _world, service = served
    document = httpx.get(f"{service.url}/openapi.json").json()
    assert {"/v1/tasks", "/v1/uploads", "/v1/uploads/{upload_id}/commit", "/v1/evidence"} <= set(document["paths"])
    assert httpx.get(f"{service.url}/docs").status_code == 200


def test_error_bodies_are_checked_when_rebuilt() -> None:
    sent = error_body(PolicyError("no", rule="function", dataset_id=bytes(range(32))))
    assert sent["attributes"] == {"rule": "function", "dataset_id": bytes(range(32)).hex()}
    rebuilt = error_from_body(403, json.loads(json.dumps(sent)))
    assert isinstance(rebuilt, PolicyError) and rebuilt.dataset_id == bytes(range(32)) and rebuilt.rule == "function"
    for hostile in (None, [], {"error": 5}, {"error": "x", "type": "SystemExit"}, {"error": "x", "type": "dict"}):
        assert type(error_from_body(500, hostile)).__name__ == "NodeError"
    odd = error_from_body(401, {"error": "x" * 10_000, "type": "RequestError", "status": 12345, "attributes": []})
    assert isinstance(odd, RequestError) and len(str(odd)) == 2000 and odd.reason == "malformed"
    typed = error_from_body(409, {"error": "x", "type": "TaskStateError", "attributes": {"current": ["list"]}})
    assert isinstance(typed, TaskStateError) and typed.current == ""


def test_plain_http_beyond_loopback_is_refused_unless_asked(tmp_path: Path) -> None:
    for host in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        check_transport(host, None, None, False)
    for host in ("0.0.0.0", "192.168.1.10", "example.org", "::"):
        with pytest.raises(InvalidArgumentError, match="not a loopback address"):
            check_transport(host, None, None, False)
        check_transport(host, None, None, True)
        check_transport(host, tmp_path / "cert.pem", tmp_path / "key.pem", False)
    with pytest.raises(InvalidArgumentError, match="both"):
        check_transport("127.0.0.1", tmp_path / "cert.pem", None, False)
    with pytest.raises(InvalidArgumentError, match="not a loopback address"):
        serve(tmp_path / "node", host="0.0.0.0")
    assert not (tmp_path / "node").exists()  # refused before anything was opened


def test_a_body_is_read_only_for_an_admitted_partys_request(served: tuple[NodeWorld, ServiceProcess]) -> None:
    """Bodies are buffered in memory (up to max_body each): nobody but an admitted party, signing afresh, gets the
    service to hold one. A stranger's request is refused before its body is read."""
    _world, service = served
    stranger = mesatee.Party.generate()
    request = sign_request(stranger, "task.create", "00" * 16, b"x" * 1000)
    host, port = service.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        raw.sendall(
            b"POST /v1/tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/msgpack\r\nContent-Length: 1000\r\n"
            + REQUEST_HEADER.encode() + b": " + base64.b64encode(request.to_bytes()) + b"\r\n\r\n"
        )  # fmt: skip
        answer = raw.recv(4096)  # the body never comes: the answer must not wait for it
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    assert b"unknown party" in answer


def test_a_node_that_drips_its_answer_is_given_up_on() -> None:
    """Each byte within the read timeout, the whole answer never: the client stops waiting instead of hanging."""
    import socket
    import threading
    import time

    from mesatee.errors import NodeError

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    stop = threading.Event()

    def drip() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/msgpack\r\nContent-Length: 100000\r\n\r\n")
            while not stop.is_set():
                try:
                    conn.sendall(b"\x00")
                except OSError:
                    return
                time.sleep(0.2)

    threading.Thread(target=drip, daemon=True).start()
    started = time.monotonic()
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        with RemoteNode(url, timeout=1.0) as node, pytest.raises(NodeError, match="too slow"):
            node.evidence(b"n" * 32)
    finally:
        stop.set()
        listener.close()
    assert time.monotonic() - started < 10
