"""Teaclave's task lifecycle: the statuses, the legal moves, and the one function that makes a move.

Created → DataAssigned → Approved → Staged → Running → Finished | Failed, and
Canceled before the task finishes. The first three are derived from the stored
grants and approvals (stored status ``created``); the others are stored, and
:func:`transition` is the one place that moves a task, refusing illegal moves.
Running → Staged is the scheduler's retry: a run lost to an infrastructure
failure (a worker died, storage failed) goes back to the queue.
"""

from __future__ import annotations

import functools
import sqlite3
import time
from collections.abc import Iterable

from mesatee.core.manifest import Manifest
from mesatee.errors import TaskStateError
from mesatee.node.database import task_approvals, task_grants, task_row

__all__ = [
    "stored_manifest",
    "FINAL_STATUSES",
    "PREPARING_STATUSES",
    "STATUSES",
    "TRANSITIONS",
    "STORED",
    "task_status",
    "transition",
]

STATUSES = ("Created", "DataAssigned", "Approved", "Staged", "Running", "Finished", "Failed", "Canceled")
#: The legal moves. Created → DataAssigned → Approved happen as grants and approvals arrive (derived, not stored).
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "Created": ("DataAssigned", "Canceled"),
    "DataAssigned": ("Approved", "Canceled"),
    "Approved": ("Staged", "Canceled"),
    "Staged": ("Running", "Canceled"),
    "Running": ("Finished", "Failed", "Canceled", "Staged"),
    "Finished": (),
    "Failed": (),
    "Canceled": (),
}
FINAL_STATUSES = ("Finished", "Failed", "Canceled")
#: Approvals and grants are accepted until the task is staged.
PREPARING_STATUSES = ("Created", "DataAssigned", "Approved")
#: The database's status for each stored Teaclave status.
STORED = {"Staged": "ready", "Running": "running", "Finished": "done", "Failed": "failed", "Canceled": "cancelled"}
_FROM_STORED = {stored: status for status, stored in STORED.items()}


_CACHED_MANIFEST_SIZE = 16 << 10


@functools.lru_cache(maxsize=1024)
def _parse_small_manifest(data: bytes) -> Manifest:
    return Manifest.from_bytes(data)


def stored_manifest(data: bytes) -> Manifest:
    """A stored task's manifest, parsed once per process for the usual small ones (parsing is strict, so slow;
    the same bytes always parse to the same immutable manifest, so the cache cannot change an answer)."""
    return _parse_small_manifest(data) if len(data) <= _CACHED_MANIFEST_SIZE else Manifest.from_bytes(data)


def status_of(stored: str, manifest: Manifest, approved: Iterable[bytes], granted: Iterable[str]) -> str:
    """The Teaclave status of a task stored as ``stored``: that status once it is staged, derived from the parties
    that approved it and the slots granted before."""
    if stored != "created":
        return _FROM_STORED[stored]
    if set(granted) != set(manifest.inputs):
        return "Created"
    if set(approved) >= set(manifest.participants):
        return "Approved"
    return "DataAssigned"


def task_status(conn: sqlite3.Connection, task_id: bytes) -> str:
    """The task's Teaclave status (:func:`status_of`), read from the database."""
    manifest_bytes, stored, _error = task_row(conn, task_id)
    if stored != "created":  # no grants or approvals to read
        return _FROM_STORED[stored]
    manifest = stored_manifest(manifest_bytes)
    return status_of(stored, manifest, task_approvals(conn, task_id), task_grants(conn, task_id))


def transition(
    conn: sqlite3.Connection, task_id: bytes, target: str, *, error: str | None = None, current: str | None = None
) -> str:
    """Move the task to ``target`` (a stored status); return the status it had.

    ``TaskStateError`` for a move not in :data:`TRANSITIONS`. Leaving Running
    clears the task's lease (see :mod:`mesatee.node.scheduler`). ``current``:
    the status the caller read in this same transaction (saves reading it again).
    """
    current = task_status(conn, task_id) if current is None else current
    if target not in TRANSITIONS[current] or target not in STORED:
        raise TaskStateError(
            f"task {task_id.hex()} cannot go from {current} to {target}", current=current, target=target
        )
    now = time.time()
    conn.execute(
        "UPDATE tasks SET status = ?, updated_at = ?, error = ?, ended_at = ?, "
        "lease_owner = CASE WHEN ? = 'running' THEN lease_owner END WHERE task_id = ?",
        (STORED[target], int(now), error, now if target in FINAL_STATUSES else None, STORED[target], task_id),
    )
    return current


def require_preparing(conn: sqlite3.Connection, task_id: bytes, what: str) -> None:
    """``TaskStateError`` unless the task still takes approvals and grants."""
    current = task_status(conn, task_id)
    if current not in PREPARING_STATUSES:
        raise TaskStateError(f"task {task_id.hex()} is {current}: {what} is too late", current=current, target=current)
