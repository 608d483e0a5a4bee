"""The HTTP routes: a thin adapter from HTTP to the node's party methods (see ``docs/service.md``).

Each route parses the transport (the signed request's header, a bounded
msgpack body, ids in the path) and calls exactly one ``Node`` method with
the signed request's bytes; the node checks everything else — the action it
serves, the target, the signature, freshness, replay, access rules, policies
— and audits it, as in process. A refusal is sent as JSON
(:func:`mesatee.node.remote.error_body`) with an HTTP status for its class.
Node calls are blocking: they run in a thread pool sized by the limits
(a watch waits in one of them).
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, BinaryIO, TypeVar

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from mesatee.core import canonical
from mesatee.errors import (
    FormatError,
    InvalidArgumentError,
    MesateeError,
    NodeError,
    NotFoundError,
    PermissionDeniedError,
    PolicyError,
    RequestError,
    StorageError,
    TaskStateError,
)
from mesatee.node.node import Node
from mesatee.node.remote import API_PREFIX, MSGPACK, OCTETS, REQUEST_HEADER, error_body, msgpack_fields
from mesatee.node.requests import MAX_REQUEST_SIZE, SignedRequest
from mesatee.service.limits import ServiceLimits
from mesatee.service.uploads import UploadStaging

__all__ = ["create_app", "http_status"]

log = logging.getLogger("mesatee.service")

T = TypeVar("T")

MAX_HEADER = (MAX_REQUEST_SIZE + 2) // 3 * 4  # base64 of the largest signed request
MAX_ID = 64  # bytes of an id in a path (task ids are 16, dataset ids 32; the node checks which)
MAX_SLOT = 256
MAX_NONCE = 64
WRITE_BLOCK = 1 << 20  # bytes of an upload gathered before one write to the staging file
DOWNLOAD_BLOCK = 1 << 20  # bytes of an output read and sent at a time

_HTTP_STATUS: tuple[tuple[type[MesateeError], int], ...] = (
    (RequestError, 401),
    (PermissionDeniedError, 403),
    (PolicyError, 403),
    (NotFoundError, 404),
    (TaskStateError, 409),
    (StorageError, 500),
    (NodeError, 409),
    (InvalidArgumentError, 400),
    (FormatError, 400),
)


def http_status(exc: MesateeError) -> int:
    """The HTTP status of a refusal: by its class (a malformed signed request is a 400, not a 401)."""
    if isinstance(exc, RequestError) and exc.reason == "malformed":
        return 400
    return next((code for cls, code in _HTTP_STATUS if isinstance(exc, cls)), 500)


class Refusal(Exception):
    """A transport-level refusal with its own HTTP status (415, 413...), carrying the error the client raises."""

    def __init__(self, code: int, error: MesateeError) -> None:
        super().__init__(str(error))
        self.code = code
        self.error = error


# --------------------------------------------------------------------------- parsing the transport


def _signed(request: Request) -> bytes:
    """The signed request's bytes, from its header (the node parses and checks them)."""
    value = request.headers.get(REQUEST_HEADER)
    if value is None:
        raise RequestError(f"request refused: no {REQUEST_HEADER} header (a signed request)", reason="unsigned")
    if len(value) > MAX_HEADER:
        raise RequestError(f"request refused: malformed: the {REQUEST_HEADER} header is too long", reason="malformed")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(
            f"request refused: malformed: the {REQUEST_HEADER} header is not base64", reason="malformed"
        ) from None


def _content_type(request: Request, expected: str) -> None:
    found = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if found != expected:
        raise Refusal(415, InvalidArgumentError(f"this route takes {expected}, not {found or 'no content type'}"))


def _declared_length(request: Request, limit: int) -> None:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise Refusal(413, InvalidArgumentError(f"the body exceeds the limit of {limit} bytes"))


async def _body(request: Request, limit: int) -> bytes:
    _declared_length(request, limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise Refusal(413, InvalidArgumentError(f"the body exceeds the limit of {limit} bytes"))
    return bytes(body)


async def _no_body(request: Request) -> None:
    async for chunk in request.stream():
        if chunk:
            raise Refusal(400, InvalidArgumentError("this route takes no body"))


async def _fields(
    request: Request, names: dict[str, type], limit: int, node: Node, signed: bytes, action: str
) -> dict[str, Any]:
    """The msgpack body's fields, read only once the signed request is an admitted party's, fresh, for ``action``
    (its body, nonce and the rest are the node method's to check): a body is held in memory up to ``limit``, and
    only parties the operator admitted may make the service hold one."""
    _content_type(request, MSGPACK)
    await _run(node.verifier.authenticate, signed, action=action)
    return msgpack_fields(await _body(request, limit), names, what="the request's body", max_size=limit)


def _hex(text: str, what: str, limit: int) -> bytes:
    if not 0 < len(text) <= 2 * limit or text != text.lower():
        raise InvalidArgumentError(f"{what} must be 1 to {limit} bytes in lowercase hex")
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise InvalidArgumentError(f"{what} must be 1 to {limit} bytes in lowercase hex") from None


def _number(text: str, what: str) -> int | float:
    """A number from a query, an int when written as one (the node sees what the client passed)."""
    try:
        return int(text) if text.lstrip("-").isdigit() else float(text[:40])
    except ValueError:
        raise InvalidArgumentError(f"{what} must be a number of seconds, not {text[:40]!r}") from None


def _answer(**fields: Any) -> Response:
    return Response(canonical.encode(fields), media_type=MSGPACK)


async def _run(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await run_in_threadpool(fn, *args, **kwargs)


async def _blocks(stream: BinaryIO) -> AsyncIterator[bytes]:
    """A download's body, one block at a time (uvicorn waits for each to drain: constant memory), then closed.

    A blob found damaged at its end raises here, after the headers went: the connection is cut short, and the
    party, who hashes what it reads, refuses it either way.
    """
    try:
        while block := await _run(stream.read, DOWNLOAD_BLOCK):
            yield block
    finally:
        stream.close()


# --------------------------------------------------------------------------- the app


def create_app(node: Node, limits: ServiceLimits | None = None) -> FastAPI:
    """The service of ``node`` (the caller's: opened before, closed after)."""
    limits = limits or ServiceLimits()
    staging = UploadStaging(
        node.path / "uploads",
        max_size=limits.max_upload,
        max_sessions=limits.max_uploads,
        per_party=limits.max_uploads_per_party,
        ttl=limits.upload_ttl,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = limits.threads
        await _run(lambda: node.enclave)  # opened once, before concurrent requests could race to open it
        await _run(staging.expire)
        yield

    app = FastAPI(
        title="mesatee node",
        summary="A mesatee node's party API: every call carries the party's signed request (docs/service.md).",
        version="1",
        lifespan=lifespan,
    )

    # ----------------------------------------------------------------------- errors: one line of JSON each

    @app.exception_handler(MesateeError)
    async def refused(_request: Request, exc: MesateeError) -> JSONResponse:
        return JSONResponse(error_body(exc), status_code=http_status(exc))

    @app.exception_handler(Refusal)
    async def refused_transport(_request: Request, exc: Refusal) -> JSONResponse:
        return JSONResponse(error_body(exc.error), status_code=exc.code)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        route = f"{request.method} {request.url.path[:200]}"
        error: MesateeError = (
            NotFoundError(f"no route {route}") if exc.status_code == 404
            else InvalidArgumentError(f"{route}: {exc.detail}")
        )  # fmt: skip
        return JSONResponse(error_body(error), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}" for e in exc.errors()[:5]
        )
        return JSONResponse(error_body(InvalidArgumentError(problems[:500])), status_code=400)

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed: %s", request.method, request.url.path[:200], type(exc).__name__)
        return JSONResponse(error_body(MesateeError("internal error")), status_code=500)

    # ----------------------------------------------------------------------- the enclave

    @app.get(f"{API_PREFIX}/health")
    async def health() -> Response:
        """Whether the service answers (no request needed)."""
        return _answer(status="ok")

    @app.get(f"{API_PREFIX}/evidence")
    async def evidence(nonce: str) -> Response:
        """The enclave's evidence for the party's fresh ``nonce`` (hex, at most 64 bytes); the party verifies it."""
        return _answer(evidence=await _run(node.evidence, _hex(nonce, "nonce", MAX_NONCE)))

    # ----------------------------------------------------------------------- datasets: resumable uploads

    @app.post(f"{API_PREFIX}/uploads")
    async def open_upload(request: Request) -> Response:
        """Open (or find again, to resume) an upload session: the header is the ``dataset.upload`` request that
        will commit it; the body ``{size, format}``."""
        signed = _signed(request)
        fields = await _fields(request, {"size": int, "format": str}, limits.max_body, node, signed, "dataset.upload")
        if fields["size"] > limits.max_upload:
            raise Refusal(413, InvalidArgumentError(f"a dataset is at most {limits.max_upload} bytes"))
        parsed, party = await _run(node.verifier.authenticate, signed, action="dataset.upload")
        session, offset = await _run(staging.open, party.party_id, parsed.body_digest, fields["size"], fields["format"])
        return _answer(upload_id=session.upload_id, offset=offset, size=session.size)

    @app.get(f"{API_PREFIX}/uploads/{{upload_id}}")
    async def upload_progress(upload_id: str, request: Request) -> Response:
        """How many bytes of the upload are staged (where to resume)."""
        await _no_body(request)
        session = staging.session(upload_id)
        return _answer(offset=staging.offset(session), size=session.size)

    @app.put(f"{API_PREFIX}/uploads/{{upload_id}}")
    async def append_upload(upload_id: str, offset: int, request: Request) -> Response:
        """Append the body (``application/octet-stream``) to the upload at ``offset``, its staged size."""
        _content_type(request, OCTETS)
        session = staging.session(upload_id)
        _declared_length(request, max(0, session.size - offset))
        with staging.appending(session, offset) as part:
            staged = offset
            block = bytearray()
            try:
                async for chunk in request.stream():
                    if staged + len(block) + len(chunk) > session.size:
                        raise Refusal(413, InvalidArgumentError(f"upload {upload_id} is {session.size} bytes"))
                    block += chunk
                    if len(block) >= WRITE_BLOCK:
                        staged += await _run(part.write, bytes(block))
                        block.clear()
            finally:  # what arrived before a disconnection is kept: the client resumes after it
                if block:
                    staged += await _run(part.write, bytes(block))
        return _answer(offset=staged)

    @app.post(f"{API_PREFIX}/uploads/{{upload_id}}/commit")
    async def commit_upload(upload_id: str, request: Request) -> Response:
        """Make the complete upload a dataset: the header is the party's ``dataset.upload`` request."""
        signed = _signed(request)
        await _no_body(request)
        session = staging.session(upload_id)
        parsed = SignedRequest.from_bytes(signed)
        staging.check_owner(session, parsed.party_id, parsed.body_digest)

        def commit() -> bytes:
            with staging.complete(session) as staged:
                try:
                    dataset_id = node.upload_dataset_file(signed, staged, format=session.format)
                except RequestError as exc:
                    if exc.reason == "body":  # the staged bytes are not the signed ones: start again
                        staging.discard(session)
                    raise
                staging.discard(session)
                return dataset_id

        return _answer(dataset_id=await _run(commit))

    # ----------------------------------------------------------------------- datasets

    @app.get(f"{API_PREFIX}/datasets")
    async def list_datasets(request: Request) -> Response:
        """The requester's datasets (``dataset.list``)."""
        signed = _signed(request)
        await _no_body(request)
        views = await _run(node.list_datasets, signed)
        return _answer(datasets=[view.to_bytes() for view in views])

    @app.put(f"{API_PREFIX}/datasets/{{dataset_id}}/policy")
    async def set_dataset_policy(dataset_id: str, request: Request) -> Response:
        """Attach a usage policy (``dataset.set_policy``; body ``{policy}``)."""
        signed = _signed(request)
        fields = await _fields(request, {"policy": bytes}, limits.max_body, node, signed, "dataset.set_policy")
        await _run(node.set_dataset_policy, signed, _hex(dataset_id, "dataset id", MAX_ID), fields["policy"])
        return _answer()

    @app.delete(f"{API_PREFIX}/datasets/{{dataset_id}}")
    async def delete_dataset(dataset_id: str, request: Request) -> Response:
        """Delete a dataset (``dataset.delete``)."""
        signed = _signed(request)
        await _no_body(request)
        await _run(node.delete_dataset, signed, _hex(dataset_id, "dataset id", MAX_ID))
        return _answer()

    # ----------------------------------------------------------------------- tasks

    @app.post(f"{API_PREFIX}/tasks")
    async def create_task(request: Request) -> Response:
        """Create a task (``task.create``; body ``{manifest}``)."""
        signed = _signed(request)
        fields = await _fields(request, {"manifest": bytes}, limits.max_body, node, signed, "task.create")
        return _answer(task_id=await _run(node.create_task, signed, fields["manifest"]))

    @app.get(f"{API_PREFIX}/tasks")
    async def list_tasks(request: Request) -> Response:
        """The tasks the requester takes part in (``task.list``)."""
        signed = _signed(request)
        await _no_body(request)
        return _answer(tasks=[view.to_bytes() for view in await _run(node.list_tasks, signed)])

    @app.get(f"{API_PREFIX}/tasks/{{task_id}}")
    async def get_task(task_id: str, request: Request) -> Response:
        """A task's view (``task.view``)."""
        signed = _signed(request)
        await _no_body(request)
        return _answer(task=(await _run(node.get_task, signed, _hex(task_id, "task id", MAX_ID))).to_bytes())

    @app.get(f"{API_PREFIX}/tasks/{{task_id}}/watch")
    async def watch_task(task_id: str, request: Request, after: str | None = None, timeout: str = "0") -> Response:
        """A task's view once its status is not ``after``, or after ``timeout`` seconds (``task.view``)."""
        signed = _signed(request)
        await _no_body(request)
        seconds = _number(timeout, "timeout")
        view = await _run(node.watch_task, signed, _hex(task_id, "task id", MAX_ID), after=after, timeout=seconds)
        return _answer(task=view.to_bytes())

    @app.post(f"{API_PREFIX}/tasks/{{task_id}}/approvals")
    async def approve_task(task_id: str, request: Request) -> Response:
        """Approve a task (``task.approve``; body ``{signature}``)."""
        signed = _signed(request)
        fields = await _fields(request, {"signature": bytes}, limits.max_body, node, signed, "task.approve")
        await _run(node.approve_task, signed, _hex(task_id, "task id", MAX_ID), fields["signature"])
        return _answer()

    @app.put(f"{API_PREFIX}/tasks/{{task_id}}/grants/{{slot}}")
    async def grant_input(task_id: str, slot: str, request: Request) -> Response:
        """Grant an input slot (``input.assign``; body ``{grant}``)."""
        signed = _signed(request)
        if not 0 < len(slot) <= MAX_SLOT:
            raise InvalidArgumentError(f"a slot name is 1 to {MAX_SLOT} characters")
        fields = await _fields(request, {"grant": bytes}, limits.max_body, node, signed, "input.assign")
        await _run(node.grant_input, signed, _hex(task_id, "task id", MAX_ID), slot, fields["grant"])
        return _answer()

    @app.post(f"{API_PREFIX}/tasks/{{task_id}}/invoke")
    async def invoke_task(task_id: str, request: Request) -> Response:
        """Stage an approved task (``task.invoke``; body ``{options}``)."""
        signed = _signed(request)
        fields = await _fields(request, {"options": bytes}, limits.max_body, node, signed, "task.invoke")
        return _answer(status=await _run(node.invoke_task, signed, _hex(task_id, "task id", MAX_ID), fields["options"]))

    @app.post(f"{API_PREFIX}/tasks/{{task_id}}/cancel")
    async def cancel_task(task_id: str, request: Request) -> Response:
        """Cancel a task (``task.cancel``)."""
        signed = _signed(request)
        await _no_body(request)
        await _run(node.cancel_task, signed, _hex(task_id, "task id", MAX_ID))
        return _answer()

    @app.get(f"{API_PREFIX}/tasks/{{task_id}}/result")
    async def fetch_result(task_id: str, request: Request) -> Response:
        """The task's ``TaskResult`` bytes (``output.fetch``), as ``application/octet-stream``."""
        signed = _signed(request)
        await _no_body(request)
        return Response(await _run(node.fetch_result, signed, _hex(task_id, "task id", MAX_ID)), media_type=OCTETS)

    @app.get(f"{API_PREFIX}/tasks/{{task_id}}/result/head")
    async def fetch_result_head(task_id: str, request: Request) -> Response:
        """The task's ``ResultHead`` bytes (``output.fetch``): its result without the output files."""
        signed = _signed(request)
        await _no_body(request)
        head = await _run(node.fetch_result_head, signed, _hex(task_id, "task id", MAX_ID))
        return Response(head, media_type=OCTETS)

    @app.get(f"{API_PREFIX}/tasks/{{task_id}}/result/outputs/{{slot}}")
    async def open_output(task_id: str, slot: str, request: Request) -> Response:
        """One output's ciphertext (``output.fetch`` for ``<task id>/<slot>``), streamed in 1 MiB blocks."""
        signed = _signed(request)
        if not 0 < len(slot) <= MAX_SLOT:
            raise InvalidArgumentError(f"a slot name is 1 to {MAX_SLOT} characters")
        await _no_body(request)
        stream = await _run(node.open_output, signed, _hex(task_id, "task id", MAX_ID), slot)
        size = os.fstat(stream.fileno()).st_size
        return StreamingResponse(_blocks(stream), media_type=OCTETS, headers={"Content-Length": str(size)})

    @app.delete(f"{API_PREFIX}/tasks/{{task_id}}/result")
    async def delete_result(task_id: str, request: Request) -> Response:
        """Delete the requester's outputs of the task (``result.delete``)."""
        signed = _signed(request)
        await _no_body(request)
        return _answer(slots=await _run(node.delete_result, signed, _hex(task_id, "task id", MAX_ID)))

    return app
