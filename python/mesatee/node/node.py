"""The node facade: one folder holding parties' datasets, tasks and results, around an enclave.

``Node(path)`` opens (or creates) ``path/node.db``, ``path/blobs/`` and the
enclave's sealed state ``path/enclave.state``. The operator admits and revokes
parties locally; everything a party asks comes as a signed request
(:func:`mesatee.node.sign_request`) with its body and goes, in one write
transaction, through the request checks (:class:`RequestVerifier`), the access
rules (:func:`authorize`), the policies (:func:`check_task`) and then the
change, audited either way.

The node is untrusted: these checks are early, friendly refusals. The enclave
re-checks approvals, grants, dataset ids and output owners from signed and
hashed material, whatever the node stores.

Task statuses are Teaclave's (:mod:`mesatee.node.lifecycle`). Invoking a
task stages it; the node's scheduler (:mod:`mesatee.node.scheduler`) runs it
in an enclave worker, in this process or in any other that opened the folder
with workers, and ``watch_task`` follows it.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from mesatee.core import canonical
from mesatee.core.files import FORMAT_MESATEE
from mesatee.core.manifest import Manifest, OutputFile, OutputInfo, ResultHead, TaskResult, verify_approval
from mesatee.errors import (
    FormatError,
    InvalidArgumentError,
    NodeError,
    NotFoundError,
    RequestError,
    SealingError,
)
from mesatee.node import audit
from mesatee.node.blobs import BlobStore
from mesatee.node.database import (
    Database,
    PartyRecord,
    blob_referenced,
    dataset_row,
    open_tasks_using,
    task_approvals,
    task_grants,
    task_row,
)
from mesatee.node.lifecycle import (
    FINAL_STATUSES,
    STATUSES,
    require_preparing,
    status_of,
    stored_manifest,
    task_status,
    transition,
)
from mesatee.node.policy import DatasetTerms, UsagePolicy, authorize, check_task
from mesatee.node.requests import AcceptedRequest, RequestVerifier, SignedRequest
from mesatee.node.scheduler import Scheduler, SchedulerConfig

if TYPE_CHECKING:
    from mesatee.core.enclave import Enclave, EnclaveIdentity
    from mesatee.parties import PartyIdentity

__all__ = ["MAX_WATCH", "STATUSES", "DatasetView", "Node", "TaskView", "invoke_options", "store_result"]

#: Requests that change nothing but their nonce and audit entry (see ``RequestVerifier.accept``'s ``durable``).
READ_ACTIONS = frozenset({"task.view", "task.list", "dataset.list", "output.fetch"})
MAX_WATCH = 60.0  # seconds one watch_task call may wait
MAX_TASK_TIMEOUT = 7 * 24 * 3600


def invoke_options(*, timeout: int | None = None) -> bytes:
    """The body of a ``task.invoke`` request: empty for the node's defaults, else the options' canonical map."""
    return b"" if timeout is None else canonical.encode({"timeout": timeout})


def _parse_invoke_options(body: bytes) -> int | None:
    if not body:
        return None
    try:
        options = canonical.decode(body, max_size=256)
    except FormatError as exc:
        raise InvalidArgumentError(f"task.invoke options: {exc}") from None
    if not isinstance(options, dict) or set(options) - {"timeout"}:
        raise InvalidArgumentError("task.invoke options: a map whose only key is 'timeout'")
    timeout = options.get("timeout")
    if isinstance(timeout, bool) or not isinstance(timeout, int) or not 1 <= timeout <= MAX_TASK_TIMEOUT:
        raise InvalidArgumentError(f"task.invoke options: timeout must be 1 to {MAX_TASK_TIMEOUT} seconds")
    return timeout


@dataclass(frozen=True)
class TaskView:
    """What a participant sees of a task: its manifest, status, progress, and whether a result is there."""

    task_id: bytes
    manifest: Manifest
    status: str
    error: str | None
    approved_by: frozenset[bytes]
    assigned: frozenset[str]
    has_result: bool
    attempts: int = 0
    updated_at: int = 0

    @property
    def done(self) -> bool:
        """Whether the task reached a final status (Finished, Failed or Canceled)."""
        return self.status in FINAL_STATUSES

    def to_bytes(self) -> bytes:
        return canonical.encode(
            {
                "task_id": self.task_id,
                "manifest": self.manifest.to_bytes(),
                "status": self.status,
                "error": self.error,
                "approved_by": sorted(self.approved_by),
                "assigned": sorted(self.assigned),
                "has_result": self.has_result,
                "attempts": self.attempts,
                "updated_at": self.updated_at,
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> TaskView:
        """Parse a view sent by a node (strictly: a remote node is untrusted)."""
        fields = _view_fields(data, "task view", {"task_id", "manifest", "status", "error", "approved_by",
                                                  "assigned", "has_result", "attempts", "updated_at"})  # fmt: skip
        manifest = Manifest.from_bytes(_typed(fields, "manifest", bytes))
        status, error = _typed(fields, "status", str), fields["error"]
        if status not in STATUSES or not (error is None or isinstance(error, str)):
            raise FormatError(f"task view: bad status {status!r} or error")
        approved, assigned = _typed(fields, "approved_by", list), _typed(fields, "assigned", list)
        if not all(isinstance(i, bytes) and len(i) == 32 for i in approved) or not all(
            isinstance(i, str) for i in assigned
        ):
            raise FormatError("task view: approved_by must hold party ids and assigned slot names")
        view = cls(
            _typed(fields, "task_id", bytes), manifest, status, error, frozenset(approved), frozenset(assigned),
            _typed(fields, "has_result", bool), _typed(fields, "attempts", int), _typed(fields, "updated_at", int),
        )  # fmt: skip
        if view.task_id != manifest.task_id:
            raise FormatError("task view: the task id is not the manifest's")
        return view


@dataclass(frozen=True)
class DatasetView:
    """One of a party's datasets as the node holds it."""

    dataset_id: bytes
    size: int
    format: str
    uses: int
    created_at: int
    policy: UsagePolicy | None

    def to_bytes(self) -> bytes:
        return canonical.encode(
            {
                "dataset_id": self.dataset_id,
                "size": self.size,
                "format": self.format,
                "uses": self.uses,
                "created_at": self.created_at,
                "policy": None if self.policy is None else self.policy.to_bytes(),
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> DatasetView:
        fields = _view_fields(data, "dataset view", {"dataset_id", "size", "format", "uses", "created_at", "policy"})
        policy = fields["policy"]
        if not (policy is None or isinstance(policy, bytes)):
            raise FormatError("dataset view: policy must be bytes or nil")
        return cls(
            _typed(fields, "dataset_id", bytes), _typed(fields, "size", int), _typed(fields, "format", str),
            _typed(fields, "uses", int), _typed(fields, "created_at", int),
            None if policy is None else UsagePolicy.from_bytes(policy),
        )  # fmt: skip


def _view_fields(data: bytes, what: str, names: set[str]) -> dict[str, Any]:
    value = canonical.decode(data, max_size=1 << 22)
    if not isinstance(value, dict) or set(value) != names:
        raise FormatError(f"{what}: expected the fields {sorted(names)}")
    return value


def _typed(fields: dict[str, Any], name: str, kind: type) -> Any:
    value = fields[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise FormatError(f"{name}: expected {kind.__name__}, got {type(value).__name__}")
    return value


# --------------------------------------------------------------------------- the node


class Node:
    """A node in the folder ``path`` (created mode 0700 if missing), safe to open from several processes.

    ``enclave``: the enclave to run tasks in, shared by the workers; without
    one, each worker opens its own, all on the sealed state in
    ``path/enclave.state`` (created once, under a lock; platform:
    ``MESATEE_HOME``'s default), closed with the node.
    ``scheduler``: the scheduler's settings; ``workers`` overrides its worker
    count (0: this process stages tasks and another runs them).
    ``durable``: every accepted request and committed result is on disk before
    the call returns (the default). False trades that for speed: after a
    power cut (not a crash of the process) the last moments of requests and
    results may be lost, the database staying consistent.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        enclave: Enclave | None = None,
        workers: int | None = None,
        scheduler: SchedulerConfig | None = None,
        durable: bool = True,
    ) -> None:
        self.path = Path(path)
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.db = Database(self.path / "node.db", durable=durable)
        self.blobs = BlobStore(self.path / "blobs")
        self.verifier = RequestVerifier(self.db)
        self._enclave = enclave
        self._owns_enclave = enclave is None
        config = scheduler or SchedulerConfig()
        self.config = config if workers is None else replace(config, workers=workers)
        self._changes = threading.Condition()
        self.scheduler = Scheduler(self.db, self.blobs, self._worker_enclave, self.config, self._changed)
        try:
            self.scheduler.start()
        except BaseException:
            self.close()
            raise

    # ----------------------------------------------------------------------- the enclave

    def _open_enclave(self) -> Enclave:
        from mesatee.core.enclave import Enclave

        # Several processes may open a new node at once: the first creates the sealed state, the others load it.
        state = self.path / "enclave.state"
        with open(self.path / "enclave.lock", "a+b") as lock:
            os.chmod(lock.fileno(), 0o600)
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                return Enclave(state_file=state)
            except SealingError as exc:
                raise SealingError(
                    f"{state}: the enclave's sealed state does not open on this platform and enclave ({exc}); was "
                    f"the node created under another MESATEE_HOME, or by another build of the enclave?",
                    exc.status,
                ) from None

    def _worker_enclave(self) -> tuple[Enclave, bool]:
        if not self._owns_enclave:
            return self.enclave, False
        return self._open_enclave(), True

    @property
    def enclave(self) -> Enclave:
        """The node's enclave (for evidence and identity; workers may run their own on the same sealed state)."""
        if self._enclave is None:
            self._enclave = self._open_enclave()
        return self._enclave

    def evidence(self, nonce: bytes) -> bytes:
        """The enclave's attestation evidence for a party's fresh ``nonce``."""
        return self.enclave.evidence(nonce)

    @property
    def enclave_identity(self) -> EnclaveIdentity:
        return self.enclave.identity

    def close(self, timeout: float = 30.0) -> None:
        """Stop the workers (runs still going after ``timeout`` go back to the queue), then close everything."""
        self.scheduler.stop(timeout)
        if self._owns_enclave and self._enclave is not None:
            self._enclave.close()
            self._enclave = None
        self.db.close()

    def __enter__(self) -> Node:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _changed(self) -> None:
        with self._changes:
            self._changes.notify_all()

    # ----------------------------------------------------------------------- operator actions (local, audited)

    def admit(self, identity: PartyIdentity, *, name: str = "") -> PartyRecord:
        """Admit a party (or re-admit a revoked one); audited as the operator."""
        with self.db.transaction() as conn:
            record = self.db.admit_party(identity.signing_key, identity.hpke_key, name=name)
            _operator(conn, "party.admit", identity.hex)
        return record

    def revoke(self, party_id: bytes) -> None:
        """Withdraw a party's admission; its requests are refused from now on. Audited as the operator."""
        with self.db.transaction() as conn:
            self.db.revoke_party(party_id)
            _operator(conn, "party.revoke", party_id.hex())

    def parties(self) -> list[PartyRecord]:
        return self.db.parties()

    def verify_audit_log(self, *, expected_head: tuple[int, bytes] | None = None) -> audit.AuditHead:
        """Check the audit log's hash chain (``AuditLogError`` naming the first bad entry)."""
        return audit.verify_audit_log(self.db.connection(), expected_head=expected_head)

    # ----------------------------------------------------------------------- request plumbing

    @contextmanager
    def _accept(
        self,
        request: SignedRequest | bytes,
        action: str,
        target: str | None,
        *,
        body: bytes | None = None,
        body_digest: bytes | None = None,
    ) -> Iterator[AcceptedRequest]:
        """The request's checks, its target, and the caller's change: one transaction, audited either way.

        ``target`` None: the caller checks it (:func:`_check_target`) once it knows it.
        """
        durable = action not in READ_ACTIONS
        with self.verifier.accept(
            request, body=body, body_digest=body_digest, action=action, durable=durable
        ) as accepted:
            if target is not None:
                _check_target(accepted, target)
            yield accepted

    @staticmethod
    def _manifest(conn: sqlite3.Connection, task_id: bytes) -> Manifest:
        return stored_manifest(task_row(conn, task_id)[0])

    # ----------------------------------------------------------------------- datasets

    def upload_dataset(
        self, request: SignedRequest | bytes, ciphertext: bytes | BinaryIO, *, format: str = FORMAT_MESATEE
    ) -> bytes:
        """Store an encrypted dataset owned by the requester; its id (SHA-256 of the ciphertext) is the target."""
        return self._add_dataset(request, self.blobs.put(ciphertext), format)  # streamed and hashed, then checked

    def upload_dataset_file(
        self, request: SignedRequest | bytes, path: str | os.PathLike[str], *, format: str = FORMAT_MESATEE
    ) -> bytes:
        """:meth:`upload_dataset` of ciphertext already in a file on the node's filesystem (a service's staged
        upload): linked into the blob store, not copied (:meth:`BlobStore.adopt`). The file is left in place for
        the caller to remove, and must not be written again."""
        return self._add_dataset(request, self.blobs.adopt(path), format)

    def _add_dataset(self, request: SignedRequest | bytes, blob_id: str, format: str) -> bytes:
        """Accept the request for the stored blob ``blob_id`` and record the dataset; the blob goes if refused."""
        dataset_id = bytes.fromhex(blob_id)
        try:
            with self._accept(request, "dataset.upload", blob_id, body_digest=dataset_id) as accepted:
                authorize("dataset.upload", accepted.party.party_id, admitted=accepted.party.admitted)
                if accepted.conn.execute("SELECT 1 FROM datasets WHERE dataset_id = ?", (dataset_id,)).fetchone():
                    raise NodeError(f"dataset.upload refused: the node already holds dataset {blob_id}")
                accepted.conn.execute(
                    "INSERT INTO datasets (dataset_id, owner, size, format, created_at) VALUES (?, ?, ?, ?, ?)",
                    (dataset_id, accepted.party.party_id, self.blobs.size(blob_id), format, int(time.time())),
                )
        except BaseException:
            self._drop_blob_if_unused(blob_id)
            raise
        return dataset_id

    def set_dataset_policy(self, request: SignedRequest | bytes, dataset_id: bytes, policy_bytes: bytes) -> None:
        """Attach (or replace) the usage policy of one of the requester's datasets."""
        with self._accept(request, "dataset.set_policy", dataset_id.hex(), body=policy_bytes) as accepted:
            owner, _uses, _policy = dataset_row(accepted.conn, dataset_id)
            authorize("dataset.set_policy", accepted.party.party_id, admitted=True, owner=owner)
            policy = UsagePolicy.from_bytes(policy_bytes)
            accepted.conn.execute(
                "INSERT INTO dataset_policies (dataset_id, policy, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (dataset_id) DO UPDATE SET policy = excluded.policy, updated_at = excluded.updated_at",
                (dataset_id, policy.to_bytes(), int(time.time())),
            )

    def delete_dataset(self, request: SignedRequest | bytes, dataset_id: bytes) -> None:
        """Delete one of the requester's datasets, refused while an open task uses it; its blob goes when unused."""
        with self._accept(request, "dataset.delete", dataset_id.hex(), body=b"") as accepted:
            owner, _uses, _policy = dataset_row(accepted.conn, dataset_id)
            authorize("dataset.delete", accepted.party.party_id, admitted=True, owner=owner)
            users = open_tasks_using(accepted.conn, dataset_id)
            if users:
                raise NodeError(
                    f"dataset.delete refused: dataset {dataset_id.hex()} is an input of task {users[0].hex()}, "
                    f"which is not finished, failed or canceled"
                )
            accepted.conn.execute("DELETE FROM datasets WHERE dataset_id = ?", (dataset_id,))
        self._drop_blob_if_unused(dataset_id.hex())

    def _drop_blob_if_unused(self, blob_id: str) -> None:
        # A concurrent upload of the same bytes re-puts the blob before it records it; that window is accepted.
        with self.db.transaction() as conn:
            if not blob_referenced(conn, blob_id):
                self.blobs.delete(blob_id)

    # ----------------------------------------------------------------------- tasks

    def create_task(self, request: SignedRequest | bytes, manifest_bytes: bytes) -> bytes:
        """Record a task the requester creates, after every input dataset's policy agreed; return its id."""
        with self._accept(request, "task.create", None, body=manifest_bytes) as accepted:
            manifest = Manifest.from_bytes(manifest_bytes)  # here, so that a malformed manifest is audited too
            _check_target(accepted, manifest.task_id.hex())
            conn = accepted.conn
            authorize("task.create", accepted.party.party_id, admitted=True, manifest=manifest)
            self._check_policies(conn, manifest)
            now = int(time.time())
            conn.execute(
                "INSERT INTO tasks (task_id, manifest, manifest_hash, creator, status, created_at, updated_at, "
                "expires_at) VALUES (?, ?, ?, ?, 'created', ?, ?, ?)",
                (manifest.task_id, manifest_bytes, manifest.hash, manifest.creator, now, now, manifest.expires_at),
            )
            conn.executemany(
                "INSERT INTO task_participants (task_id, party_id) VALUES (?, ?)",
                [(manifest.task_id, party_id) for party_id in manifest.participants],
            )
            conn.executemany(
                "INSERT INTO task_inputs (task_id, slot, dataset_id, owner) VALUES (?, ?, ?, ?)",
                [(manifest.task_id, slot, i.dataset_id, i.owner) for slot, i in manifest.inputs.items()],
            )
            conn.executemany(
                "UPDATE datasets SET uses = uses + 1 WHERE dataset_id = ?",
                [(dataset_id,) for dataset_id in {i.dataset_id for i in manifest.inputs.values()}],
            )
        return manifest.task_id

    @staticmethod
    def _check_policies(conn: sqlite3.Connection, manifest: Manifest) -> None:
        terms: dict[bytes, DatasetTerms] = {}
        uses: dict[bytes, int] = {}
        for input_ in manifest.inputs.values():
            try:
                owner, used, policy = dataset_row(conn, input_.dataset_id)
            except NotFoundError:
                continue  # check_task names the missing dataset (rule "dataset")
            terms[input_.dataset_id] = DatasetTerms(owner, None if policy is None else UsagePolicy.from_bytes(policy))
            uses[input_.dataset_id] = used
        check_task(manifest, terms, uses, int(time.time()))

    def approve_task(self, request: SignedRequest | bytes, task_id: bytes, signature: bytes) -> None:
        """Record a participant's approval of the task's manifest (checked here, and again by the enclave)."""
        with self._accept(request, "task.approve", task_id.hex(), body=signature) as accepted:
            manifest = self._manifest(accepted.conn, task_id)
            party_id = accepted.party.party_id
            authorize("task.approve", party_id, admitted=True, manifest=manifest)
            require_preparing(accepted.conn, task_id, "an approval")
            verify_approval(manifest, party_id, signature)
            accepted.conn.execute(
                "INSERT OR REPLACE INTO approvals (task_id, party_id, signature, created_at) VALUES (?, ?, ?, ?)",
                (task_id, party_id, signature, int(time.time())),
            )

    def grant_input(self, request: SignedRequest | bytes, task_id: bytes, slot: str, grant: bytes) -> None:
        """Record an input owner's grant (opaque to the node) and assign the slot's dataset."""
        with self._accept(request, "input.assign", f"{task_id.hex()}/{slot}", body=grant) as accepted:
            manifest = self._manifest(accepted.conn, task_id)
            party_id = accepted.party.party_id
            authorize("input.assign", party_id, admitted=True, manifest=manifest, slot=slot)
            require_preparing(accepted.conn, task_id, "a grant")
            now = int(time.time())
            accepted.conn.execute(
                "INSERT OR REPLACE INTO grants (task_id, slot, party_id, ciphertext, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (task_id, slot, party_id, grant, now),
            )
            accepted.conn.execute(
                "UPDATE task_inputs SET dataset_id = ?, assigned_at = ? WHERE task_id = ? AND slot = ?",
                (manifest.inputs[slot].dataset_id, now, task_id, slot),
            )

    def get_task(self, request: SignedRequest | bytes, task_id: bytes) -> TaskView:
        """The task as its participants see it."""
        with self._accept(request, "task.view", task_id.hex(), body=b"") as accepted:
            manifest = self._manifest(accepted.conn, task_id)
            authorize("task.view", accepted.party.party_id, admitted=True, manifest=manifest)
            return self._view(accepted.conn, task_id)

    @staticmethod
    def _view(conn: sqlite3.Connection, task_id: bytes) -> TaskView:
        row = conn.execute(
            "SELECT manifest, status, error, attempts, updated_at, EXISTS (SELECT 1 FROM results WHERE task_id = ?) "
            "FROM tasks WHERE task_id = ?",
            (task_id, task_id),
        ).fetchone()
        if row is None:
            raise NotFoundError(f"no task {task_id.hex()}")
        manifest_bytes, stored, error, attempts, updated_at, has_result = row
        manifest = stored_manifest(manifest_bytes)
        approved, granted = frozenset(task_approvals(conn, task_id)), frozenset(task_grants(conn, task_id))
        status = status_of(stored, manifest, approved, granted)
        return TaskView(task_id, manifest, status, error, approved, granted, bool(has_result), attempts, updated_at)

    def list_tasks(self, request: SignedRequest | bytes) -> list[TaskView]:
        """The tasks the requester takes part in, oldest first."""
        with self._accept(request, "task.list", "", body=b"") as accepted:
            rows = accepted.conn.execute(
                "SELECT t.task_id FROM tasks t JOIN task_participants p USING (task_id) WHERE p.party_id = ? "
                "ORDER BY t.created_at, t.task_id",
                (accepted.party.party_id,),
            ).fetchall()
            return [self._view(accepted.conn, task_id) for (task_id,) in rows]

    def list_datasets(self, request: SignedRequest | bytes) -> list[DatasetView]:
        """The requester's own datasets, oldest first."""
        with self._accept(request, "dataset.list", "", body=b"") as accepted:
            rows = accepted.conn.execute(
                "SELECT d.dataset_id, d.size, d.format, d.uses, d.created_at, p.policy FROM datasets d "
                "LEFT JOIN dataset_policies p USING (dataset_id) WHERE d.owner = ? ORDER BY d.created_at, d.dataset_id",
                (accepted.party.party_id,),
            ).fetchall()
        return [DatasetView(*row[:5], None if row[5] is None else UsagePolicy.from_bytes(row[5])) for row in rows]

    def cancel_task(self, request: SignedRequest | bytes, task_id: bytes) -> None:
        """Cancel a task that has not ended (creator only); a running task's result will be discarded."""
        with self._accept(request, "task.cancel", task_id.hex(), body=b"") as accepted:
            manifest = self._manifest(accepted.conn, task_id)
            authorize("task.cancel", accepted.party.party_id, admitted=True, manifest=manifest)
            transition(accepted.conn, task_id, "Canceled")
        self._changed()

    # ----------------------------------------------------------------------- running

    def invoke_task(self, request: SignedRequest | bytes, task_id: bytes, options: bytes = b"") -> str:
        """Stage an approved task for the scheduler (creator only); return its status, ``"Staged"``.

        ``options``: :func:`invoke_options` (a timeout for this task's run), signed as the request's body.
        """
        with self._accept(request, "task.invoke", task_id.hex(), body=options) as accepted:
            conn = accepted.conn
            manifest = self._manifest(conn, task_id)
            authorize("task.invoke", accepted.party.party_id, admitted=True, manifest=manifest)
            timeout = _parse_invoke_options(options)
            transition(conn, task_id, "Staged")
            conn.execute(
                "UPDATE tasks SET staged_at = ?, not_before = 0, attempts = 0, timeout = ? WHERE task_id = ?",
                (time.time(), timeout, task_id),
            )
        self.scheduler.wake()
        self._changed()
        return "Staged"

    def watch_task(
        self, request: SignedRequest | bytes, task_id: bytes, *, after: str | None = None, timeout: float = 0.0
    ) -> TaskView:
        """The task's view once its status is not ``after`` (at once when ``after`` is None), or after ``timeout``
        seconds (at most :data:`MAX_WATCH`) whatever it is. One signed request however long it waits."""
        if after is not None and after not in STATUSES:
            raise InvalidArgumentError(f"after must be a task status, not {after!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 <= timeout <= MAX_WATCH:
            raise InvalidArgumentError(f"timeout must be 0 to {MAX_WATCH} seconds, not {timeout!r}")
        version = self.db.data_version()  # before the view: a commit in between must count as news
        view = self.get_task(request, task_id)
        deadline = time.monotonic() + timeout
        conn = self.db.connection()
        while view.status == after and not view.done:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            with self._changes:  # woken by this process's changes; other processes' are seen by polling
                self._changes.wait(min(left, self.config.poll_interval))
            if (now := self.db.data_version()) != version:
                version = now
                if task_status(conn, task_id) != after:
                    view = self._view(conn, task_id)
        return view

    # ----------------------------------------------------------------------- results

    def fetch_result(self, request: SignedRequest | bytes, task_id: bytes) -> bytes:
        """The task's ``TaskResult`` bytes (participants only; each opens only what is addressed to it).

        Outputs their owners deleted are left out. The output files come inline: large ones stream with
        :meth:`fetch_result_head` and :meth:`open_output` instead.
        """
        with self._accept(request, "output.fetch", task_id.hex(), body=b"") as accepted:
            (receipt, signature, value), outputs = self._result(accepted, task_id)
            files = {slot: OutputFile(self.blobs.get(blob_id), keys) for slot, (blob_id, keys) in outputs.items()}
            return TaskResult(receipt, signature, files, value).to_bytes()

    def fetch_result_head(self, request: SignedRequest | bytes, task_id: bytes) -> bytes:
        """The task's ``ResultHead`` bytes: its result without the output files (their sizes instead); access as
        :meth:`fetch_result`."""
        with self._accept(request, "output.fetch", task_id.hex(), body=b"") as accepted:
            (receipt, signature, value), outputs = self._result(accepted, task_id)
            infos = {slot: OutputInfo(self.blobs.size(blob_id), keys) for slot, (blob_id, keys) in outputs.items()}
            return ResultHead(receipt, signature, infos, value).to_bytes()

    def _result(
        self, accepted: AcceptedRequest, task_id: bytes
    ) -> tuple[tuple[bytes, bytes, dict[bytes, bytes]], dict[str, tuple[str, dict[bytes, bytes]]]]:
        """The stored result (receipt, signature, return values) and its outputs not deleted (slot → blob, keys)."""
        conn = accepted.conn
        manifest = self._manifest(conn, task_id)
        # The result holds every output's ciphertext, but only its owners' wrapped keys: any participant may
        # carry it (the "task.view" rule); "output.fetch" per slot applies to single outputs (open_output).
        authorize("task.view", accepted.party.party_id, admitted=True, manifest=manifest)
        row = conn.execute(
            "SELECT receipt, signature, return_value FROM results WHERE task_id = ?", (task_id,)
        ).fetchone()
        if row is None:
            raise NotFoundError(f"task {task_id.hex()} has no result")
        outputs = {
            slot: (blob_id, _from_hex_map(keys))
            for slot, blob_id, keys in conn.execute(
                "SELECT slot, blob_id, keys FROM result_outputs WHERE task_id = ? AND deleted_at IS NULL", (task_id,)
            )
        }
        return (row[0], row[1], _from_hex_map(row[2])), outputs

    def open_output(self, request: SignedRequest | bytes, task_id: bytes, slot: str) -> BinaryIO:
        """A stream of one output's ciphertext (its owners only), verified against its blob id as it is read.

        The caller closes it. The blob is hashed once before the stream is handed out, after the request was
        accepted: outside the write transaction, which a large blob would otherwise hold for seconds.
        """
        with self._accept(request, "output.fetch", f"{task_id.hex()}/{slot}", body=b"") as accepted:
            manifest = self._manifest(accepted.conn, task_id)
            authorize("output.fetch", accepted.party.party_id, admitted=True, manifest=manifest, slot=slot)
            row = accepted.conn.execute(
                "SELECT blob_id FROM result_outputs WHERE task_id = ? AND slot = ? AND deleted_at IS NULL",
                (task_id, slot),
            ).fetchone()
            if row is None:
                raise NotFoundError(f"task {task_id.hex()} has no output {slot!r} (no result, or deleted)")
        return self.blobs.open(row[0])  # type: ignore[return-value]

    def delete_result(self, request: SignedRequest | bytes, task_id: bytes) -> list[str]:
        """Delete the outputs the requester owns (for all their owners); return their slots. Blobs go when unused."""
        with self._accept(request, "result.delete", task_id.hex(), body=b"") as accepted:
            conn = accepted.conn
            manifest = self._manifest(conn, task_id)
            party_id = accepted.party.party_id
            owned = [slot for slot, output in manifest.outputs.items() if party_id in output.owners]
            for slot in owned or list(manifest.outputs)[:1]:
                authorize("result.delete", party_id, admitted=True, manifest=manifest, slot=slot)
            if not owned:
                raise NotFoundError(f"task {task_id.hex()} has no outputs")
            marks = ", ".join("?" for _ in owned)
            rows = conn.execute(
                f"UPDATE result_outputs SET deleted_at = ? WHERE task_id = ? AND deleted_at IS NULL "
                f"AND slot IN ({marks}) RETURNING blob_id",
                (int(time.time()), task_id, *owned),
            ).fetchall()
        for (blob_id,) in rows:
            self._drop_blob_if_unused(blob_id)
        return owned


def _check_target(accepted: AcceptedRequest, target: str) -> None:
    if accepted.request.target != target:
        raise RequestError(
            f"request refused: signed for target {accepted.request.target[:80]!r}, not {target!r}", reason="target"
        )


def _operator(conn: sqlite3.Connection, action: str, target: str) -> None:
    audit.append(conn, party=audit.OPERATOR, action=action, target=target, outcome=audit.ACCEPTED)


def store_result(conn: sqlite3.Connection, task_id: bytes, result: TaskResult, blob_ids: dict[str, str]) -> None:
    """Record a task's result (its outputs already stored as the blobs ``blob_ids``) in the caller's transaction."""
    conn.execute(
        "INSERT INTO results (task_id, receipt, signature, return_value, created_at) VALUES (?, ?, ?, ?, ?)",
        (task_id, result.receipt_bytes, result.signature, _hex_map(result.return_value), int(time.time())),
    )
    if result.outputs:
        conn.executemany(
            "INSERT INTO result_outputs (task_id, slot, blob_id, keys) VALUES (?, ?, ?, ?)",
            [(task_id, slot, blob_ids[slot], _hex_map(o.keys)) for slot, o in result.outputs.items()],
        )


def _hex_map(value: Any) -> bytes:
    return canonical.encode({key.hex(): item for key, item in value.items()})


def _from_hex_map(data: bytes) -> dict[bytes, bytes]:
    return {bytes.fromhex(key): item for key, item in canonical.decode(data, max_size=1 << 24).items()}
