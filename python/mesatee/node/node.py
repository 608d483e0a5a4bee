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

Task statuses are Teaclave's: Created → DataAssigned → Approved → Staged →
Running → Finished | Failed, and Canceled before it runs. The first three
are derived from the stored grants and approvals (stored status ``created``);
the others are stored, and :func:`transition` is the one place that moves a
task and refuses illegal moves.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from mesatee.core import canonical
from mesatee.core.files import FORMAT_MESATEE
from mesatee.core.manifest import Manifest, OutputFile, TaskResult, encode_invocation, verify_approval
from mesatee.errors import NodeError, NotFoundError, RequestError, TaskRefusedError, TaskStateError
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
from mesatee.node.policy import DatasetTerms, UsagePolicy, authorize, check_task
from mesatee.node.requests import AcceptedRequest, RequestVerifier, SignedRequest

if TYPE_CHECKING:
    from mesatee.core.enclave import Enclave, EnclaveIdentity
    from mesatee.parties import PartyIdentity

__all__ = ["STATUSES", "TRANSITIONS", "Node", "TaskView", "task_status", "transition"]

STATUSES = ("Created", "DataAssigned", "Approved", "Staged", "Running", "Finished", "Failed", "Canceled")
#: The legal moves. Created → DataAssigned → Approved happen as grants and approvals arrive (derived, not stored).
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "Created": ("DataAssigned", "Canceled"),
    "DataAssigned": ("Approved", "Canceled"),
    "Approved": ("Staged", "Canceled"),
    "Staged": ("Running", "Canceled"),
    "Running": ("Finished", "Failed"),
    "Finished": (),
    "Failed": (),
    "Canceled": (),
}
_STORED = {"Staged": "ready", "Running": "running", "Finished": "done", "Failed": "failed", "Canceled": "cancelled"}
_FROM_STORED = {stored: status for status, stored in _STORED.items()}
#: Approvals and grants are accepted until the task is staged.
_PREPARING = ("Created", "DataAssigned", "Approved")
ENCLAVE = "enclave"  # the audit log's party for what the enclave decided


# --------------------------------------------------------------------------- statuses


def task_status(conn: sqlite3.Connection, task_id: bytes) -> str:
    """The task's Teaclave status: stored once it is staged, derived from its grants and approvals before."""
    manifest_bytes, stored, _error = task_row(conn, task_id)
    if stored != "created":
        return _FROM_STORED[stored]
    manifest = Manifest.from_bytes(manifest_bytes)
    if set(task_grants(conn, task_id)) != set(manifest.inputs):
        return "Created"
    if set(task_approvals(conn, task_id)) >= set(manifest.participants):
        return "Approved"
    return "DataAssigned"


def transition(conn: sqlite3.Connection, task_id: bytes, target: str, *, error: str | None = None) -> str:
    """Move the task to ``target`` (a stored status); ``TaskStateError`` for a move not in :data:`TRANSITIONS`."""
    current = task_status(conn, task_id)
    if target not in TRANSITIONS[current] or target not in _STORED:
        raise TaskStateError(
            f"task {task_id.hex()} cannot go from {current} to {target}", current=current, target=target
        )
    conn.execute(
        "UPDATE tasks SET status = ?, updated_at = ?, error = ? WHERE task_id = ?",
        (_STORED[target], int(time.time()), error, task_id),
    )
    return current


def _require_preparing(conn: sqlite3.Connection, task_id: bytes, what: str) -> None:
    current = task_status(conn, task_id)
    if current not in _PREPARING:
        raise TaskStateError(f"task {task_id.hex()} is {current}: {what} is too late", current=current, target=current)


@dataclass(frozen=True)
class TaskView:
    """What a participant sees of a task."""

    task_id: bytes
    manifest: Manifest
    status: str
    error: str | None
    approved_by: frozenset[bytes]
    assigned: frozenset[str]
    has_result: bool


# --------------------------------------------------------------------------- the node


class Node:
    """A node in the folder ``path`` (created mode 0700 if missing), safe to open from several processes.

    ``enclave``: the enclave to run tasks in; without one, the node opens one on
    first use with its sealed state in ``path/enclave.state`` (platform:
    ``MESATEE_HOME``'s default) and closes it with the node.
    """

    def __init__(self, path: str | os.PathLike[str], *, enclave: Enclave | None = None) -> None:
        self.path = Path(path)
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.db = Database(self.path / "node.db")
        self.blobs = BlobStore(self.path / "blobs")
        self.verifier = RequestVerifier(self.db)
        self._enclave = enclave
        self._owns_enclave = enclave is None

    # ----------------------------------------------------------------------- the enclave

    @property
    def enclave(self) -> Enclave:
        if self._enclave is None:
            from mesatee.core.enclave import Enclave

            self._enclave = Enclave(state_file=self.path / "enclave.state")
        return self._enclave

    def evidence(self, nonce: bytes) -> bytes:
        """The enclave's attestation evidence for a party's fresh ``nonce``."""
        return self.enclave.evidence(nonce)

    @property
    def enclave_identity(self) -> EnclaveIdentity:
        return self.enclave.identity

    def close(self) -> None:
        if self._owns_enclave and self._enclave is not None:
            self._enclave.close()
            self._enclave = None
        self.db.close()

    def __enter__(self) -> Node:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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
        with self.verifier.accept(request, body=body, body_digest=body_digest, action=action) as accepted:
            if target is not None:
                _check_target(accepted, target)
            yield accepted

    @staticmethod
    def _manifest(conn: sqlite3.Connection, task_id: bytes) -> Manifest:
        return Manifest.from_bytes(task_row(conn, task_id)[0])

    # ----------------------------------------------------------------------- datasets

    def upload_dataset(
        self, request: SignedRequest | bytes, ciphertext: bytes | BinaryIO, *, format: str = FORMAT_MESATEE
    ) -> bytes:
        """Store an encrypted dataset owned by the requester; its id (SHA-256 of the ciphertext) is the target."""
        blob_id = self.blobs.put(ciphertext)  # streamed and hashed; the digest is then checked against the request
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
            _require_preparing(accepted.conn, task_id, "an approval")
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
            _require_preparing(accepted.conn, task_id, "a grant")
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
            conn = accepted.conn
            manifest_bytes, _stored, error = task_row(conn, task_id)
            manifest = Manifest.from_bytes(manifest_bytes)
            authorize("task.view", accepted.party.party_id, admitted=True, manifest=manifest)
            has_result = conn.execute("SELECT 1 FROM results WHERE task_id = ?", (task_id,)).fetchone() is not None
            return TaskView(
                task_id,
                manifest,
                task_status(conn, task_id),
                error,
                frozenset(task_approvals(conn, task_id)),
                frozenset(task_grants(conn, task_id)),
                has_result,
            )

    def cancel_task(self, request: SignedRequest | bytes, task_id: bytes) -> None:
        """Cancel a task before it runs (creator only)."""
        with self._accept(request, "task.cancel", task_id.hex(), body=b"") as accepted:
            manifest = self._manifest(accepted.conn, task_id)
            authorize("task.cancel", accepted.party.party_id, admitted=True, manifest=manifest)
            transition(accepted.conn, task_id, "Canceled")

    # ----------------------------------------------------------------------- running

    def invoke_task(self, request: SignedRequest | bytes, task_id: bytes, now: int | None = None) -> str:
        """Run an approved task in the enclave now (creator only); return its final status, Finished or Failed.

        ``now``: the host time handed to the enclave (default: the clock).
        """
        with self._accept(request, "task.invoke", task_id.hex(), body=b"") as accepted:
            conn = accepted.conn
            manifest = self._manifest(conn, task_id)
            authorize("task.invoke", accepted.party.party_id, admitted=True, manifest=manifest)
            transition(conn, task_id, "Staged")
            transition(conn, task_id, "Running")
            invocation = self._invocation(conn, task_id, manifest, int(time.time()) if now is None else now)
        # The persistent scheduler (a later session) plugs in here: the task stays Staged in the database, and a
        # worker takes it, moves it to Running and calls _run. Until then the request runs the task synchronously.
        return self._run(task_id, invocation)

    def _invocation(self, conn: sqlite3.Connection, task_id: bytes, manifest: Manifest, now: int) -> bytes:
        inputs = {slot: self.blobs.get(i.dataset_id.hex()) for slot, i in manifest.inputs.items()}
        manifest_bytes = task_row(conn, task_id)[0]
        return encode_invocation(manifest_bytes, task_approvals(conn, task_id), task_grants(conn, task_id), inputs, now)

    def _run(self, task_id: bytes, invocation: bytes) -> str:
        try:
            result = TaskResult.from_bytes(self.enclave.invoke(invocation))
        except TaskRefusedError as exc:
            self._finish(task_id, "Failed", str(exc))
            return "Failed"
        except BaseException as exc:
            self._finish(task_id, "Failed", f"internal error ({type(exc).__name__})")
            raise
        self._store_result(task_id, result)
        return "Finished"

    def _finish(self, task_id: bytes, status: str, detail: str = "") -> None:
        with self.db.transaction() as conn:
            transition(conn, task_id, status, error=detail or None)
            outcome = audit.ACCEPTED if status == "Finished" else audit.REFUSED
            audit.append(conn, party=ENCLAVE, action="task.run", target=task_id.hex(), outcome=outcome, detail=detail)

    def _store_result(self, task_id: bytes, result: TaskResult) -> None:
        blob_ids = {slot: self.blobs.put(output.file) for slot, output in result.outputs.items()}
        now = int(time.time())
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO results (task_id, receipt, signature, return_value, created_at) VALUES (?, ?, ?, ?, ?)",
                (task_id, result.receipt_bytes, result.signature, _hex_map(result.return_value), now),
            )
            conn.executemany(
                "INSERT INTO result_outputs (task_id, slot, blob_id, keys) VALUES (?, ?, ?, ?)",
                [(task_id, slot, blob_ids[slot], _hex_map(o.keys)) for slot, o in result.outputs.items()],
            )
            self._finish(task_id, "Finished")

    # ----------------------------------------------------------------------- results

    def fetch_result(self, request: SignedRequest | bytes, task_id: bytes) -> bytes:
        """The task's ``TaskResult`` bytes (participants only; each opens only what is addressed to it).

        Outputs their owners deleted are left out.
        """
        with self._accept(request, "output.fetch", task_id.hex(), body=b"") as accepted:
            conn = accepted.conn
            manifest = self._manifest(conn, task_id)
            # The result holds every output's ciphertext, but only its owners' wrapped keys: any participant may
            # carry it (the "task.view" rule); "output.fetch" per slot applies to single outputs.
            authorize("task.view", accepted.party.party_id, admitted=True, manifest=manifest)
            row = conn.execute(
                "SELECT receipt, signature, return_value FROM results WHERE task_id = ?", (task_id,)
            ).fetchone()
            if row is None:
                raise NotFoundError(f"task {task_id.hex()} has no result")
            outputs = {
                slot: OutputFile(self.blobs.get(blob_id), _from_hex_map(keys))
                for slot, blob_id, keys in conn.execute(
                    "SELECT slot, blob_id, keys FROM result_outputs WHERE task_id = ? AND deleted_at IS NULL",
                    (task_id,),
                )
            }
            return TaskResult(row[0], row[1], outputs, _from_hex_map(row[2])).to_bytes()

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


def _hex_map(value: Any) -> bytes:
    return canonical.encode({key.hex(): item for key, item in value.items()})


def _from_hex_map(data: bytes) -> dict[bytes, bytes]:
    return {bytes.fromhex(key): item for key, item in canonical.decode(data, max_size=1 << 24).items()}
