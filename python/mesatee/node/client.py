"""A party's client of a node: every request signed for it, the enclave verified before any key leaves.

``Client(node, party, policy)`` works the same over an in-process
:class:`~mesatee.node.Node` and over a node on the network (a URL; see
``docs/service.md``): both take the same signed requests, so code moves from
one to the other by changing the first argument.

The node is untrusted. The client verifies the enclave's evidence (a fresh
nonce, the party's :class:`~mesatee.AttestationPolicy`) before it wraps any
dataset key for it, approves only manifests that list this party's own keys,
and opens results only after checking the enclave's receipt.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

from mesatee.core.files import DEFAULT_CHUNK_SIZE, FORMAT_MESATEE
from mesatee.core.manifest import EnclaveRequirement, FunctionRef, InputSlot, Manifest, ResultHead, TaskResult
from mesatee.errors import FormatError, InvalidArgumentError, TaskStateError
from mesatee.node.node import MAX_WATCH, DatasetView, TaskView, invoke_options
from mesatee.node.policy import UsagePolicy
from mesatee.node.requests import SignedRequest, sign_request
from mesatee.parties import OpenedResult, Party

if TYPE_CHECKING:
    from mesatee.core.attestation import AttestationPolicy, VerifiedClaims
    from mesatee.parties import PartyIdentity

__all__ = ["Client", "NodeAPI"]

_HASH_BLOCK = 1 << 20


class NodeAPI(Protocol):
    """What a node offers its parties: :class:`~mesatee.node.Node` in process, ``RemoteNode`` over HTTP."""

    def evidence(self, nonce: bytes) -> bytes: ...
    def upload_dataset(self, request: SignedRequest, ciphertext: bytes | BinaryIO, *, format: str = ...) -> bytes: ...
    def set_dataset_policy(self, request: SignedRequest, dataset_id: bytes, policy_bytes: bytes) -> None: ...
    def delete_dataset(self, request: SignedRequest, dataset_id: bytes) -> None: ...
    def list_datasets(self, request: SignedRequest) -> list[DatasetView]: ...
    def create_task(self, request: SignedRequest, manifest_bytes: bytes) -> bytes: ...
    def approve_task(self, request: SignedRequest, task_id: bytes, signature: bytes) -> None: ...
    def grant_input(self, request: SignedRequest, task_id: bytes, slot: str, grant: bytes) -> None: ...
    def get_task(self, request: SignedRequest, task_id: bytes) -> TaskView: ...
    def watch_task(
        self, request: SignedRequest, task_id: bytes, *, after: str | None = ..., timeout: float = ...
    ) -> TaskView: ...
    def list_tasks(self, request: SignedRequest) -> list[TaskView]: ...
    def invoke_task(self, request: SignedRequest, task_id: bytes, options: bytes = ...) -> str: ...
    def cancel_task(self, request: SignedRequest, task_id: bytes) -> None: ...
    def fetch_result(self, request: SignedRequest, task_id: bytes) -> bytes: ...
    def fetch_result_head(self, request: SignedRequest, task_id: bytes) -> bytes: ...
    def open_output(self, request: SignedRequest, task_id: bytes, slot: str) -> BinaryIO: ...
    def delete_result(self, request: SignedRequest, task_id: bytes) -> list[str]: ...


class _Progress(io.RawIOBase):
    """A seekable binary stream that reports how far it was read."""

    def __init__(self, stream: BinaryIO, report: Callable[[int, int], None]) -> None:
        super().__init__()
        self._stream, self._report = stream, report
        self._total = stream.seek(0, os.SEEK_END)
        stream.seek(0)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self._stream.readinto(buffer)  # type: ignore[attr-defined]
        self._report(self._stream.tell(), self._total)
        return n

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._stream.seek(offset, whence)

    def tell(self) -> int:
        return self._stream.tell()


def _connect(node: NodeAPI | str) -> NodeAPI:
    if isinstance(node, str):
        if not node.startswith(("http://", "https://")):
            raise InvalidArgumentError(f"a node is a Node, or a URL starting http:// or https://, not {node[:80]!r}")
        from mesatee.node.remote import RemoteNode

        return RemoteNode(node)
    return node


class Client:
    """``party``'s client of ``node`` (a :class:`~mesatee.node.Node` or a service URL), trusting only enclaves that
    meet ``policy``."""

    def __init__(self, node: NodeAPI | str, party: Party, policy: AttestationPolicy) -> None:
        if not isinstance(party, Party):
            raise InvalidArgumentError(f"party must be a Party, not {type(party).__name__}")
        self.node = _connect(node)
        self.party = party
        self.policy = policy
        self._claims: VerifiedClaims | None = None

    def _sign(self, action: str, target: str, body: bytes = b"") -> SignedRequest:
        return sign_request(self.party, action, target, body)

    # ----------------------------------------------------------------------- the enclave

    def verify_enclave(self, *, refresh: bool = False) -> VerifiedClaims:
        """Fetch the node's evidence for a fresh nonce and verify it against the policy (kept until ``refresh``)."""
        if self._claims is None or refresh:
            nonce = os.urandom(32)
            self._claims = self.party.verify_enclave(self.node.evidence(nonce), self.policy, nonce=nonce)
        return self._claims

    # ----------------------------------------------------------------------- datasets

    def upload_dataset(
        self,
        ciphertext: bytes | str | os.PathLike[str],
        *,
        format: str = FORMAT_MESATEE,
        progress: Callable[[int, int], None] | None = None,
    ) -> bytes:
        """Upload an encrypted dataset (its bytes, or the path of its file); return its id (SHA-256 of it).

        ``progress(sent, total)`` is called as the bytes go (a resumed upload may go back).
        """
        if isinstance(ciphertext, bytes | bytearray | memoryview):
            ciphertext = bytes(ciphertext)
            source: BinaryIO = io.BytesIO(ciphertext)
            digest = hashlib.sha256(ciphertext).digest()
        else:
            source = open(ciphertext, "rb")  # noqa: SIM115 - closed below
            hasher = hashlib.sha256()
            while block := source.read(_HASH_BLOCK):
                hasher.update(block)
            digest = hasher.digest()
            source.seek(0)
        with source:  # streamed to the node; it checks the bytes against the signed digest
            request = sign_request(self.party, "dataset.upload", digest.hex(), body_digest=digest)
            body = source if progress is None else _Progress(source, progress)
            return self.node.upload_dataset(request, body, format=format)

    def encrypt_and_upload(
        self,
        plaintext: bytes | str | os.PathLike[str],
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        progress: Callable[[int, int], None] | None = None,
    ) -> bytes:
        """Encrypt a file (or bytes) as a new dataset, keep its key in the party's keyring, upload it; its id."""
        with tempfile.TemporaryDirectory(prefix="mesatee-upload-") as folder:
            source = Path(folder) / "plain"
            if isinstance(plaintext, bytes | bytearray | memoryview):
                source.write_bytes(plaintext)
            else:
                source = Path(plaintext)
            encrypted = self.party.encrypt_dataset(source, Path(folder) / "cipher", chunk_size=chunk_size)
            self.upload_dataset(Path(folder) / "cipher", progress=progress)
        return encrypted.dataset_id

    def set_policy(self, dataset_id: bytes, policy: UsagePolicy) -> None:
        body = policy.to_bytes()
        self.node.set_dataset_policy(self._sign("dataset.set_policy", dataset_id.hex(), body), dataset_id, body)

    def delete_dataset(self, dataset_id: bytes) -> None:
        self.node.delete_dataset(self._sign("dataset.delete", dataset_id.hex()), dataset_id)

    def datasets(self) -> list[DatasetView]:
        return self.node.list_datasets(self._sign("dataset.list", ""))

    # ----------------------------------------------------------------------- tasks

    def new_manifest(
        self,
        function: str,
        *,
        parties: Iterable[PartyIdentity] = (),
        inputs: Mapping[str, tuple[PartyIdentity, bytes] | tuple[PartyIdentity, bytes, str]] | None = None,
        outputs: Mapping[str, Iterable[PartyIdentity]] | None = None,
        arguments: Mapping[str, Any] | None = None,
        lifetime: int = 3600,
        version: int = 1,
        function_owner: PartyIdentity | None = None,
    ) -> Manifest:
        """A manifest for ``function`` created by this party, accepting exactly the verified enclave.

        ``inputs``: slot → (owner's identity, dataset id[, file format: e.g. Teaclave's ``teaclave-aes-gcm-128``]);
        ``outputs``: slot → owners' identities;
        ``function_owner``: the party whose function it is (a participant; None for the public built-ins);
        ``parties``: any other participant's identity.
        """
        claims = self.verify_enclave()
        input_owners = [spec[0] for spec in (inputs or {}).values()]
        others = (*parties, *input_owners, *([function_owner] if function_owner else []))
        identities = {p.party_id: p for p in others}
        for owners in (outputs or {}).values():
            identities.update({o.party_id: o for o in owners})
        return Manifest.create(
            creator=self.party.identity,
            function=FunctionRef(function, version, function_owner.party_id if function_owner else None),
            enclaves=EnclaveRequirement(mrenclave=claims.mrenclave),
            parties=list(identities.values()),
            inputs={slot: InputSlot(spec[0].party_id, *spec[1:]) for slot, spec in (inputs or {}).items()},
            outputs={slot: [o.party_id for o in owners] for slot, owners in (outputs or {}).items()},
            arguments=arguments,
            lifetime=lifetime,
        )

    def create_task(self, manifest: Manifest) -> bytes:
        body = manifest.to_bytes()
        return self.node.create_task(self._sign("task.create", manifest.task_id.hex(), body), body)

    def approve(self, task: bytes | Manifest) -> None:
        """Approve a task: the manifest given (after checking it is the task's), or the one the node holds.

        Approving signs the manifest's every term: read it first (``client.task(task_id).manifest``).
        """
        manifest = task if isinstance(task, Manifest) else self.task(task).manifest
        signature = self.party.approve(manifest)
        task_id = manifest.task_id
        self.node.approve_task(self._sign("task.approve", task_id.hex(), signature), task_id, signature)

    def grant(self, task: bytes | Manifest, slots: Iterable[str] | None = None) -> list[str]:
        """Grant the verified enclave this party's inputs of the task (every slot it owns, or ``slots``)."""
        manifest = task if isinstance(task, Manifest) else self.task(task).manifest
        claims = self.verify_enclave()
        owned = [s for s, i in manifest.inputs.items() if i.owner == self.party.party_id]
        chosen = owned if slots is None else list(slots)
        for slot in chosen:
            grant = self.party.grant(manifest, slot, claims)
            target = f"{manifest.task_id.hex()}/{slot}"
            self.node.grant_input(self._sign("input.assign", target, grant), manifest.task_id, slot, grant)
        return chosen

    def task(self, task_id: bytes) -> TaskView:
        return _of_task(self.node.get_task(self._sign("task.view", task_id.hex()), task_id), task_id)

    def tasks(self) -> list[TaskView]:
        """The tasks this party takes part in."""
        return self.node.list_tasks(self._sign("task.list", ""))

    def invoke(self, task_id: bytes, *, timeout: int | None = None) -> str:
        """Queue the task to run (creator only); ``timeout``: seconds its run may take (default: the node's)."""
        body = invoke_options(timeout=timeout)
        return self.node.invoke_task(self._sign("task.invoke", task_id.hex(), body), task_id, body)

    def cancel(self, task_id: bytes) -> None:
        self.node.cancel_task(self._sign("task.cancel", task_id.hex()), task_id)

    def wait(
        self, task_id: bytes, timeout: float | None = None, *, on_progress: Callable[[TaskView], None] | None = None
    ) -> TaskView:
        """Wait until the task is Finished, Failed or Canceled; ``TimeoutError`` after ``timeout`` seconds.

        ``on_progress`` is called with each new status as it is seen (the first call: the status now).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        seen: str | None = None
        while True:
            left = MAX_WATCH if deadline is None else min(MAX_WATCH, max(0.0, deadline - time.monotonic()))
            view = self.node.watch_task(self._sign("task.view", task_id.hex()), task_id, after=seen, timeout=left)
            view = _of_task(view, task_id)
            if view.status != seen:
                seen = view.status
                if on_progress is not None:
                    on_progress(view)
            if view.done:
                return view
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"task {task_id.hex()} is still {view.status} after {timeout} s")

    def run(self, task_id: bytes, timeout: float | None = None) -> OpenedResult:
        """Invoke the task, wait for it to end, and open its result (see :meth:`result`)."""
        self.invoke(task_id)
        return self.result(task_id, wait=timeout)

    def result(
        self, task_id: bytes, *, wait: float | None = 0.0, output_dir: str | os.PathLike[str] | None = None
    ) -> OpenedResult:
        """The task's result, verified and opened: its return value and this party's outputs.

        ``wait``: seconds to wait for the task to end first (None: as long as it takes).
        ``output_dir``: stream this party's outputs into files there, ``<output_dir>/<slot>``, in constant memory
        (:meth:`Party.download_result`: each is renamed into place only once it authenticated and hashed to the
        receipt's digest); the result's ``files`` name them and its ``outputs`` are empty. Without it the outputs
        come inline, in memory (``outputs``).
        A task that failed or was canceled raises ``TaskStateError`` with its error.
        """
        view = self.wait(task_id, wait) if wait != 0.0 else self.task(task_id)
        if view.status != "Finished":
            detail = f": {view.error}" if view.error else ""
            raise TaskStateError(
                f"task {task_id.hex()} is {view.status}{detail}", current=view.status, target="Finished"
            )
        if output_dir is None:
            result = TaskResult.from_bytes(self.node.fetch_result(self._sign("output.fetch", task_id.hex()), task_id))
            return self.party.open_result(result, view.manifest, self.verify_enclave())
        head = ResultHead.from_bytes(self.node.fetch_result_head(self._sign("output.fetch", task_id.hex()), task_id))

        def open_output(slot: str) -> BinaryIO:
            return self.node.open_output(self._sign("output.fetch", f"{task_id.hex()}/{slot}"), task_id, slot)

        return self.party.download_result(head, view.manifest, self.verify_enclave(), open_output, output_dir)

    def delete_result(self, task_id: bytes) -> list[str]:
        """Delete this party's outputs of the task; return their slots."""
        return self.node.delete_result(self._sign("result.delete", task_id.hex()), task_id)


def _of_task(view: TaskView, task_id: bytes) -> TaskView:
    """The node's view, refused unless it is of the task asked for: a node could otherwise pass another task (its
    manifest, and a result with a genuine receipt for it) off as this one."""
    if view.task_id != task_id:
        raise FormatError(f"the node answered with another task ({view.task_id.hex()}) than {task_id.hex()}")
    return view
