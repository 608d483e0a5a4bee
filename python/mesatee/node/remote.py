"""A node over HTTP: ``RemoteNode(url)`` offers exactly :class:`~mesatee.node.NodeAPI`, like an in-process ``Node``.

Every party method sends the party's :class:`SignedRequest` (header
``Mesatee-Request``: base64 of its bytes) to the service (``mesatee.service``,
``docs/service.md``), which hands it to the node's method of the same name;
the node checks it exactly as in process. A refusal comes back as a JSON
error naming the exception's class, status and attributes, and is raised here
as the same exception, so code cannot tell the two apart.

Datasets upload through a resumable session (create, append from an offset,
commit with the signed request), streamed in chunks; a dropped connection is
resumed from the offset the service holds, and uploading the same bytes again
(after a server restart, or a stale request re-signed) resumes too.

The service is untrusted: every answer is parsed strictly (sizes bounded,
types checked) and nothing it says is trusted beyond what the party checks
itself (evidence, receipts).
"""

from __future__ import annotations

import base64
import functools
import inspect
import io
import json
import os
import ssl
import tempfile
import time
from collections.abc import Iterator
from contextlib import closing
from typing import Any, BinaryIO
from urllib.parse import quote

import httpx

from mesatee.core import canonical
from mesatee.core.files import FORMAT_MESATEE
from mesatee.errors import FormatError, InvalidArgumentError, MesateeError, NodeError, Status
from mesatee.node.node import MAX_WATCH, DatasetView, TaskView
from mesatee.node.requests import SignedRequest

__all__ = [
    "API_PREFIX",
    "MSGPACK",
    "OCTETS",
    "REQUEST_HEADER",
    "RemoteNode",
    "error_body",
    "error_from_body",
    "msgpack_fields",
]

API_PREFIX = "/v1"
REQUEST_HEADER = "Mesatee-Request"  # base64 (standard alphabet, padded) of SignedRequest.to_bytes()
MSGPACK = "application/msgpack"
OCTETS = "application/octet-stream"

UPLOAD_CHUNK = 1 << 20  # bytes per piece of a streamed upload body
MAX_ANSWER = 1 << 26  # a msgpack answer (task lists hold manifests); results stream separately
MAX_RESULT = 1 << 36  # a TaskResult: its outputs' ciphertext
MAX_ERROR_MESSAGE = 2000
MAX_ERROR_ANSWER = 1 << 16  # an error's JSON (its message is cut at MAX_ERROR_MESSAGE characters)
UPLOAD_RESUMES = 6  # times one upload resumes after a dropped connection before giving up (about 13 s in all)
RESUME_DELAY = 0.25  # seconds before the first resumption, doubled each time
MAX_RESUME_DELAY = 5.0
WATCH_MARGIN = 30.0  # seconds a watch's answer may take beyond the time it waits
MIN_ANSWER_RATE = 1 << 14  # bytes per second an answer must keep up once its request's timeout has passed


# --------------------------------------------------------------------------- errors on the wire


def _error_classes() -> dict[str, type[MesateeError]]:
    found: dict[str, type[MesateeError]] = {}
    pending: list[type[MesateeError]] = [MesateeError]
    while pending:
        cls = pending.pop()
        found[cls.__name__] = cls
        pending.extend(cls.__subclasses__())
    return found


def _attribute_names(cls: type[MesateeError]) -> tuple[str, ...]:
    """The keyword-only attributes an error class takes (``reason``, ``rule``, ``current``...)."""
    parameters = inspect.signature(cls.__init__).parameters.values()
    return tuple(p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY)


def error_body(exc: MesateeError) -> dict[str, Any]:
    """A refusal as the service sends it (JSON): message, class, status, and the class's attributes."""
    attributes: dict[str, Any] = {}
    for name in _attribute_names(type(exc)):
        value = getattr(exc, name, None)
        attributes[name] = value.hex() if isinstance(value, bytes) else value
    return {"error": str(exc), "type": type(exc).__name__, "status": int(exc.status), "attributes": attributes}


def error_from_body(http_status: int, body: Any) -> MesateeError:
    """The exception a service's error answer stands for (checked: the service is untrusted).

    Only mesatee's own classes are rebuilt, with their own attributes; anything else is a ``NodeError``.
    """
    if not isinstance(body, dict) or not isinstance(body.get("error"), str):
        return NodeError(f"the node answered HTTP {http_status} without an error message")
    message = body["error"][:MAX_ERROR_MESSAGE]
    cls = _error_classes().get(body.get("type")) if isinstance(body.get("type"), str) else None
    if cls is None:
        return NodeError(f"the node answered HTTP {http_status}: {message}")
    status = body.get("status")
    known = status if isinstance(status, int) and status in set(Status) else None
    sent = body.get("attributes") if isinstance(body.get("attributes"), dict) else {}
    attributes: dict[str, Any] = {}
    for name in _attribute_names(cls):
        value = sent.get(name)
        if name == "dataset_id":
            value = _hex_id(value)
        elif not (value is None or isinstance(value, int | str)) or isinstance(value, bool):
            value = None
        if isinstance(value, str):
            value = value[:MAX_ERROR_MESSAGE]
        if value is not None:
            attributes[name] = value
    try:
        return cls(message, None if known is None else Status(known), **attributes)
    except (TypeError, ValueError):
        return cls(message)


def _hex_id(value: Any) -> bytes | None:
    if not isinstance(value, str) or len(value) != 64:
        return None
    try:
        return bytes.fromhex(value)
    except ValueError:
        return None


# --------------------------------------------------------------------------- the client


@functools.cache
def _default_tls() -> ssl.SSLContext:
    """httpx's default TLS context (its CA bundle), built once per process: loading the bundle takes about 30 ms,
    which a fresh client per command or per task would pay each time. A context is safe to share between threads."""
    return httpx.create_ssl_context()


def msgpack_fields(data: bytes, names: dict[str, type], *, what: str, max_size: int = MAX_ANSWER) -> dict[str, Any]:
    """A msgpack body (a request's or an answer's): a canonical map of exactly these fields, of these types."""
    value = canonical.decode(data, max_size=max_size)
    if not isinstance(value, dict) or set(value) != set(names):
        raise FormatError(f"{what}: expected a map of the fields {sorted(names)}")
    for name, kind in names.items():
        if not isinstance(value[name], kind) or (kind is int and isinstance(value[name], bool)):
            raise FormatError(f"{what}: {name} is not {kind.__name__}")
    return value


def _seekable(ciphertext: bytes | BinaryIO) -> tuple[BinaryIO, int]:
    """The upload as a seekable stream (to resume from any offset) and its size; a pipe is spooled to disk first."""
    if isinstance(ciphertext, bytes | bytearray | memoryview):
        return io.BytesIO(bytes(ciphertext)), len(ciphertext)
    if not ciphertext.seekable():
        spool = tempfile.TemporaryFile()  # noqa: SIM115 - the caller's upload closes it with the session
        while block := ciphertext.read(UPLOAD_CHUNK):
            spool.write(block)
        spool.seek(0)
        ciphertext = spool  # type: ignore[assignment]
    start = ciphertext.tell()
    size = ciphertext.seek(0, os.SEEK_END) - start
    ciphertext.seek(start)
    return ciphertext, size


class RemoteNode:
    """The node served at ``url`` (``http://host:port`` or ``https://...``), as a :class:`NodeAPI`.

    ``verify``: TLS verification, as httpx takes it (True: the system's CAs; a CA bundle's path; an SSL context).
    ``timeout``: seconds to wait for the service (connect, each read and write).
    """

    def __init__(self, url: str, *, verify: Any = True, timeout: float = 60.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise InvalidArgumentError(f"a node's URL starts http:// or https://, not {url[:80]!r}")
        self.url = url.rstrip("/")
        tls = _default_tls() if verify is True else verify
        self._http = httpx.Client(base_url=self.url + API_PREFIX, verify=tls, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RemoteNode:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RemoteNode({self.url!r})"

    # ----------------------------------------------------------------------- plumbing

    def _open(
        self,
        method: str,
        path: str,
        request: SignedRequest | bytes | None = None,
        *,
        fields: dict[str, Any] | None = None,
        content: bytes | Iterator[bytes] | None = None,
        params: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        """Send a request; the answer's headers (its body not read yet: the caller closes it), or its error raised."""
        headers = {}
        if request is not None:
            raw = request.to_bytes() if isinstance(request, SignedRequest) else bytes(request)
            headers[REQUEST_HEADER] = base64.b64encode(raw).decode("ascii")
        if fields is not None:
            headers["Content-Type"] = MSGPACK
            content = canonical.encode(fields)
        elif content is not None:
            headers["Content-Type"] = OCTETS
        extra = {} if timeout is None else {"timeout": timeout}
        sent = self._http.build_request(method, path, headers=headers, content=content, params=params, **extra)
        answer = self._http.send(sent, stream=True)
        if answer.status_code >= 400:
            with closing(answer):
                body = _read(answer, MAX_ERROR_ANSWER, f"{method} {path}", self._patience(timeout))
            raise error_from_body(answer.status_code, _json(body))
        return answer

    def _send(self, method: str, path: str, request: SignedRequest | bytes | None = None, *,
              max_size: int = MAX_ANSWER, **options: Any) -> bytes:  # fmt: skip
        with closing(self._open(method, path, request, **options)) as answer:
            return _read(answer, max_size, f"{method} {path}", self._patience(options.get("timeout")))

    def _patience(self, timeout: float | None) -> float:
        return timeout if timeout is not None else (self._http.timeout.read or 60.0)

    def _call(self, method: str, path: str, request: SignedRequest | bytes | None, names: dict[str, type],
              **options: Any) -> dict[str, Any]:  # fmt: skip
        return msgpack_fields(self._send(method, path, request, **options), names, what="the node's answer")

    # ----------------------------------------------------------------------- NodeAPI

    def evidence(self, nonce: bytes) -> bytes:
        return self._call("GET", "/evidence", None, {"evidence": bytes}, params={"nonce": bytes(nonce).hex()})[
            "evidence"
        ]

    def upload_dataset(
        self, request: SignedRequest | bytes, ciphertext: bytes | BinaryIO, *, format: str = FORMAT_MESATEE
    ) -> bytes:
        """Upload through a resumable session: create (or find) it, append what it lacks, commit with ``request``."""
        stream, size = _seekable(ciphertext)
        try:
            start = stream.tell()
            session = self._call(
                "POST", "/uploads", request, {"upload_id": str, "offset": int, "size": int},
                fields={"size": size, "format": format},
            )  # fmt: skip
            path = f"/uploads/{quote(session['upload_id'], safe='')}"
            offset: int | None = _offset(session["offset"], size)
            for attempt in range(UPLOAD_RESUMES + 1):
                try:
                    if offset is None:  # after a dropped connection: where the service's staged bytes end
                        offset = _offset(self._call("GET", path, None, {"offset": int, "size": int})["offset"], size)
                    if offset < size:
                        stream.seek(start + offset)
                        offset = _offset(self._call(
                            "PUT", path, None, {"offset": int}, content=_pieces(stream, size - offset),
                            params={"offset": offset},
                        )["offset"], size)  # fmt: skip
                    break
                except httpx.TransportError:
                    if attempt == UPLOAD_RESUMES:
                        raise
                    time.sleep(min(RESUME_DELAY * 2**attempt, MAX_RESUME_DELAY))
                    offset = None
            return self._call("POST", f"{path}/commit", request, {"dataset_id": bytes})["dataset_id"]
        finally:
            if stream is not ciphertext:
                stream.close()

    def set_dataset_policy(self, request: SignedRequest | bytes, dataset_id: bytes, policy_bytes: bytes) -> None:
        self._send("PUT", f"/datasets/{dataset_id.hex()}/policy", request, fields={"policy": policy_bytes})

    def delete_dataset(self, request: SignedRequest | bytes, dataset_id: bytes) -> None:
        self._send("DELETE", f"/datasets/{dataset_id.hex()}", request)

    def list_datasets(self, request: SignedRequest | bytes) -> list[DatasetView]:
        views = self._call("GET", "/datasets", request, {"datasets": list})["datasets"]
        return [DatasetView.from_bytes(_blob(view)) for view in views]

    def create_task(self, request: SignedRequest | bytes, manifest_bytes: bytes) -> bytes:
        return self._call("POST", "/tasks", request, {"task_id": bytes}, fields={"manifest": manifest_bytes})["task_id"]

    def approve_task(self, request: SignedRequest | bytes, task_id: bytes, signature: bytes) -> None:
        self._send("POST", f"/tasks/{task_id.hex()}/approvals", request, fields={"signature": signature})

    def grant_input(self, request: SignedRequest | bytes, task_id: bytes, slot: str, grant: bytes) -> None:
        self._send("PUT", f"/tasks/{task_id.hex()}/grants/{quote(slot, safe='')}", request, fields={"grant": grant})

    def get_task(self, request: SignedRequest | bytes, task_id: bytes) -> TaskView:
        return TaskView.from_bytes(self._call("GET", f"/tasks/{task_id.hex()}", request, {"task": bytes})["task"])

    def watch_task(
        self, request: SignedRequest | bytes, task_id: bytes, *, after: str | None = None, timeout: float = 0.0
    ) -> TaskView:
        params: dict[str, Any] = {"timeout": timeout}
        if after is not None:
            params["after"] = after
        wait = min(float(timeout), MAX_WATCH) + WATCH_MARGIN
        answer = self._call(
            "GET", f"/tasks/{task_id.hex()}/watch", request, {"task": bytes}, params=params,
            timeout=max(wait, self._http.timeout.read or 0.0),
        )  # fmt: skip
        return TaskView.from_bytes(answer["task"])

    def list_tasks(self, request: SignedRequest | bytes) -> list[TaskView]:
        views = self._call("GET", "/tasks", request, {"tasks": list})["tasks"]
        return [TaskView.from_bytes(_blob(view)) for view in views]

    def invoke_task(self, request: SignedRequest | bytes, task_id: bytes, options: bytes = b"") -> str:
        return self._call(
            "POST", f"/tasks/{task_id.hex()}/invoke", request, {"status": str}, fields={"options": options}
        )["status"]

    def cancel_task(self, request: SignedRequest | bytes, task_id: bytes) -> None:
        self._send("POST", f"/tasks/{task_id.hex()}/cancel", request)

    def fetch_result(self, request: SignedRequest | bytes, task_id: bytes) -> bytes:
        return self._send("GET", f"/tasks/{task_id.hex()}/result", request, max_size=MAX_RESULT)

    def fetch_result_head(self, request: SignedRequest | bytes, task_id: bytes) -> bytes:
        return self._send("GET", f"/tasks/{task_id.hex()}/result/head", request)

    def open_output(self, request: SignedRequest | bytes, task_id: bytes, slot: str) -> BinaryIO:
        """The output's ciphertext as the service streams it (the caller closes it; the party bounds and hashes it)."""
        path = f"/tasks/{task_id.hex()}/result/outputs/{quote(slot, safe='')}"
        return _Download(self._open("GET", path, request))  # type: ignore[return-value]

    def delete_result(self, request: SignedRequest | bytes, task_id: bytes) -> list[str]:
        slots = self._call("DELETE", f"/tasks/{task_id.hex()}/result", request, {"slots": list})["slots"]
        if not all(isinstance(slot, str) for slot in slots):
            raise FormatError("the node's answer: slots must be strings")
        return slots


def _offset(offset: int, size: int) -> int:
    """Where the node says an upload's staged bytes end: within the upload (the client seeks its stream there, and
    must never send what lies before the upload's start)."""
    if not 0 <= offset <= size:
        raise FormatError(f"the node's answer: an upload offset of {offset} is outside the upload's {size} bytes")
    return offset


def _pieces(stream: BinaryIO, length: int) -> Iterator[bytes]:
    """``length`` bytes of ``stream`` in pieces of at most :data:`UPLOAD_CHUNK` (a request body, streamed)."""
    while length > 0:
        piece = stream.read(min(UPLOAD_CHUNK, length))
        if not piece:
            raise InvalidArgumentError("the upload's stream ended before its size")
        length -= len(piece)
        yield piece


class _Download(io.RawIOBase):
    """A streamed answer's body as a read-only stream, one network block at a time."""

    def __init__(self, answer: httpx.Response) -> None:
        super().__init__()
        self._answer = answer
        self._blocks = answer.iter_bytes()
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            block = next(self._blocks, None)
            if block is None:
                return 0
            self._pending = memoryview(block)
        n = min(len(buffer), len(self._pending))
        memoryview(buffer)[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def close(self) -> None:
        if not self.closed:
            self._answer.close()
        super().close()


def _read(answer: httpx.Response, max_size: int, what: str, patience: float) -> bytes:
    """An answer's whole body, refused past ``max_size`` bytes or when it comes slower than
    :data:`MIN_ANSWER_RATE` after ``patience`` seconds (the service is untrusted: a byte now and then would
    otherwise hold the caller forever, each read within its timeout)."""
    body = bytearray()
    started = time.monotonic()
    for block in answer.iter_bytes():
        body += block
        if len(body) > max_size:
            raise NodeError(f"the node's answer to {what} exceeds {max_size} bytes")
        if time.monotonic() - started > patience + len(body) / MIN_ANSWER_RATE:
            raise NodeError(f"the node's answer to {what} is too slow ({len(body)} bytes in {patience:g}+ s)")
    return bytes(body)


def _blob(value: Any) -> bytes:
    if not isinstance(value, bytes):
        raise FormatError("the node's answer: a list item is not bytes")
    return value


def _json(body: bytes) -> Any:
    try:
        return json.loads(body[:65536])
    except ValueError:
        return None
