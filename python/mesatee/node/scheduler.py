"""The persistent scheduler: a queue in the node's database, drained by a pool of enclave workers.

A staged task is a row with status ``ready``. Workers (threads, one enclave
each; enclave calls release the GIL) claim the oldest one in a write
transaction — status ``running``, a *lease* naming this process and when it
ends, the run's deadline — run it in the enclave outside any transaction, and
commit the result in another. Any number of processes may drain one node: the
claim is a write transaction, so a task is claimed by one of them at a time.

- **Exactly once.** The result is committed only if the task is still running
  under this worker's lease, and ``results`` holds at most one row per task:
  the first committed result wins, a late one (a lease that expired, a task
  canceled or timed out meanwhile) is discarded.
- **Crash safety.** A supervisor thread renews this process's leases. A task
  whose lease ran out (its process died, or hung) is staged again by whichever
  process notices; at start-up, tasks leased to a dead process of this host
  are staged again at once.
- **Retry.** A run lost to an infrastructure failure (the enclave crashed,
  storage failed, the worker died) is staged again after a short back-off, up
  to ``max_attempts`` runs; a task the enclave refused fails at once, never
  retried.
- **Timeout and cancellation.** A task running past its deadline fails
  ("timed out"); a running task may be canceled. The enclave call itself
  cannot be interrupted: its worker is replaced at once and the call's result
  is discarded when it returns.

Progress is the task's status and its timestamps; waiters are woken by this
process's changes at once and see other processes' changes within
``poll_interval``.
"""

from __future__ import annotations

import logging
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mesatee.core.manifest import TaskResult, encode_invocation
from mesatee.errors import InvalidArgumentError, TaskRefusedError
from mesatee.node import audit
from mesatee.node.blobs import BlobStore
from mesatee.node.database import Database, blob_referenced, task_approvals, task_grants
from mesatee.node.lifecycle import transition

if TYPE_CHECKING:
    from mesatee.core.enclave import Enclave

__all__ = ["ENCLAVE", "SCHEDULER", "Scheduler", "SchedulerConfig"]

ENCLAVE = "enclave"  # the audit log's party for what the enclave decided
SCHEDULER = "scheduler"  # ... and for what the scheduler did on its own (re-staging, timeouts)
_RECHECK = 0.1
log = logging.getLogger("mesatee.node")


@dataclass(frozen=True)
class SchedulerConfig:
    """``workers``: enclave worker threads in this process (0: this process only queues, others run).
    ``task_timeout``: default seconds a run may take. ``lease``: seconds a claim lasts unless renewed
    (a crashed process's tasks are staged again after at most this long). ``max_attempts``: runs of a task
    before infrastructure failures fail it. ``poll_interval``: how often idle workers and waiters look at the
    database for other processes' changes. ``retry_delay``: the first back-off, doubled at each attempt.
    """

    workers: int = 1
    task_timeout: float = 3600.0
    lease: float = 10.0
    max_attempts: int = 3
    poll_interval: float = 0.005
    retry_delay: float = 0.1

    def __post_init__(self) -> None:
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or not 0 <= self.workers <= 256:
            raise InvalidArgumentError(f"workers must be an int from 0 to 256, not {self.workers!r}")
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise InvalidArgumentError(f"max_attempts must be a positive int, not {self.max_attempts!r}")
        for name in ("task_timeout", "lease", "poll_interval"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise InvalidArgumentError(f"{name} must be a positive number of seconds, not {value!r}")
        if isinstance(self.retry_delay, bool) or not isinstance(self.retry_delay, int | float) or self.retry_delay < 0:
            raise InvalidArgumentError(f"retry_delay must be a number of seconds >= 0, not {self.retry_delay!r}")


@dataclass(frozen=True)
class _Claim:
    task_id: bytes
    manifest: bytes
    attempt: int


class _Worker:
    def __init__(self, enclave: Enclave, owns_enclave: bool) -> None:
        self.enclave = enclave
        self.owns_enclave = owns_enclave
        self.task_id: bytes | None = None
        self.abandoned = False  # its task was canceled or timed out while the enclave call went on
        self.thread: threading.Thread | None = None


def _owner_alive(owner: str) -> bool | None:
    """Whether the process named in a lease is alive: None when it is on another host (the lease decides)."""
    host, _, rest = owner.partition("|")
    pid = rest.split("|", 1)[0]
    if host != socket.gethostname() or not pid.isdigit():
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Scheduler:
    """The queue and the workers of one process.

    ``open_enclave`` returns ``(enclave, owned)``: a worker's enclave, and
    whether the worker closes it when it ends. ``changed`` is called after
    every status change this scheduler makes (the node wakes its waiters).
    """

    def __init__(
        self,
        db: Database,
        blobs: BlobStore,
        open_enclave: Callable[[], tuple[Enclave, bool]],
        config: SchedulerConfig,
        changed: Callable[[], None],
    ) -> None:
        self.db = db
        self.blobs = blobs
        self.config = config
        self.owner = f"{socket.gethostname()}|{os.getpid()}|{uuid.uuid4().hex[:12]}"
        self._open_enclave = open_enclave
        self._changed = changed
        self._wake = threading.Condition()
        self._stopping = threading.Event()
        self._workers: list[_Worker] = []
        self._workers_lock = threading.Lock()
        self._supervisor: threading.Thread | None = None
        # For tests and benchmarks: enclave calls made by this process, the seconds spent in them, and the
        # seconds workers spent on tasks in all (claim, inputs, enclave call, commit).
        self.runs = 0
        self.enclave_seconds = 0.0
        self.busy_seconds = 0.0
        self._stats_lock = threading.Lock()

    # ----------------------------------------------------------------------- life

    @property
    def running(self) -> bool:
        return self._supervisor is not None and not self._stopping.is_set()

    def start(self) -> None:
        """Stage again what dead processes of this host left running, then start the workers and the supervisor."""
        if self._supervisor is not None or self.config.workers == 0:
            return
        self._recover(only_dead=True)
        for _ in range(self.config.workers):
            self._spawn()
        self._supervisor = threading.Thread(target=self._supervise, name="mesatee-supervisor", daemon=True)
        self._supervisor.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop claiming; wait up to ``timeout`` for runs in progress, then hand the unfinished ones back."""
        if self._supervisor is None:
            return
        self._stopping.set()
        self.wake()
        deadline = time.monotonic() + timeout
        with self._workers_lock:
            workers = list(self._workers)
        for worker in workers:
            if worker.thread is not None:
                worker.thread.join(max(0.0, deadline - time.monotonic()))
        self._supervisor.join(max(0.0, deadline - time.monotonic()))
        with self.db.transaction() as conn:  # runs still in the enclave: back to the queue, not counted as attempts
            for (task_id,) in conn.execute(
                "SELECT task_id FROM tasks WHERE status = 'running' AND lease_owner = ?", (self.owner,)
            ).fetchall():
                self._restage(conn, task_id, "the node stopped during the run", refund=True)
        for worker in workers:
            if worker.thread is not None and not worker.thread.is_alive() and worker.owns_enclave:
                worker.enclave.close()
        self._supervisor = None
        self._changed()

    def wake(self) -> None:
        """A task was staged (or the scheduler stops): wake an idle worker now."""
        with self._wake:
            self._wake.notify_all()

    # ----------------------------------------------------------------------- workers

    def _spawn(self) -> None:
        enclave, owned = self._open_enclave()
        worker = _Worker(enclave, owned)
        worker.thread = threading.Thread(target=self._work, args=(worker,), name="mesatee-worker", daemon=True)
        with self._workers_lock:
            self._workers.append(worker)
        worker.thread.start()

    def _work(self, worker: _Worker) -> None:
        try:
            while not self._stopping.is_set() and not worker.abandoned:
                try:
                    self._work_once(worker)
                except Exception as exc:  # the database failed (busy past its timeout, disk full...): keep the worker
                    log.error("worker: %s: %s", type(exc).__name__, exc)
                    self._stopping.wait(self.config.poll_interval * 20)
        finally:
            with self._workers_lock:
                self._workers.remove(worker)
            if worker.abandoned and worker.owns_enclave:
                worker.enclave.close()

    def _work_once(self, worker: _Worker) -> None:
        """Claim a task and run it, or wait for one. A task whose run this cannot finish (the database failing)
        stays leased to no busy worker: its lease runs out and the task is staged again."""
        started = time.perf_counter()
        version = self.db.data_version()  # before looking: a task staged after that wakes the wait
        claim = self._claim() if self._ready() else None
        if claim is None:
            self._idle(version)
            return
        worker.task_id = claim.task_id
        try:
            self._run(worker.enclave, claim)
        finally:
            worker.task_id = None
            with self._stats_lock:
                self.busy_seconds += time.perf_counter() - started

    def _idle(self, version: int) -> None:
        """Wait for a staged task: woken at once by this process; another process's commit is seen by polling the
        database's data version (``version`` when the queue was last looked at); a task waiting out its retry
        back-off is looked for every ``_RECHECK`` s."""
        until = time.monotonic() + _RECHECK
        while version == self.db.data_version() and time.monotonic() < until and not self._stopping.is_set():
            with self._wake:
                if self._wake.wait(self.config.poll_interval):
                    return

    def _ready(self) -> bool:
        row = (
            self.db.connection()
            .execute("SELECT 1 FROM tasks WHERE status = 'ready' AND not_before <= ? LIMIT 1", (time.time(),))
            .fetchone()
        )
        return row is not None

    def _claim(self) -> _Claim | None:
        now = time.time()
        with self.db.transaction(durable=False) as conn:  # a claim lost to a power cut only runs the task again
            row = conn.execute(
                "SELECT task_id, manifest, attempts, timeout FROM tasks WHERE status = 'ready' AND not_before <= ? "
                "ORDER BY staged_at, task_id LIMIT 1",
                (now,),
            ).fetchone()
            if row is None:
                return None
            task_id, manifest, attempts, timeout = row
            transition(conn, task_id, "Running", current="Staged")
            conn.execute(
                "UPDATE tasks SET lease_owner = ?, lease_until = ?, deadline = ?, started_at = ?, "
                "attempts = attempts + 1 WHERE task_id = ?",
                (self.owner, now + self.config.lease, now + (timeout or self.config.task_timeout), now, task_id),
            )
        self._changed()
        return _Claim(task_id, manifest, attempts + 1)

    def _run(self, enclave: Enclave, claim: _Claim) -> None:
        try:
            invocation = self._invocation(claim)
            started = time.perf_counter()
            try:
                output = enclave.invoke(invocation)
            finally:
                with self._stats_lock:
                    self.enclave_seconds += time.perf_counter() - started
                    self.runs += 1
            result = TaskResult.from_bytes(output)
            self._commit(claim, result)
        except TaskRefusedError as exc:
            self._end(claim, "Failed", str(exc), outcome=audit.REFUSED)
        except Exception as exc:  # infrastructure: the enclave crashed, storage failed, the result was malformed
            self._retry_or_fail(claim, f"{type(exc).__name__}: {exc}")

    def _invocation(self, claim: _Claim) -> bytes:
        conn = self.db.connection()  # approvals, grants and inputs no longer change once a task is staged
        rows = conn.execute("SELECT slot, dataset_id FROM task_inputs WHERE task_id = ?", (claim.task_id,))
        inputs = {slot: self.blobs.get(dataset_id.hex()) for slot, dataset_id in rows}
        approvals, grants = task_approvals(conn, claim.task_id), task_grants(conn, claim.task_id)
        return encode_invocation(claim.manifest, approvals, grants, inputs, int(time.time()))

    # ----------------------------------------------------------------------- ends of a run

    def _holds(self, conn: sqlite3.Connection, task_id: bytes) -> bool:
        return self._lease(conn, task_id)[0]

    def _lease(self, conn: sqlite3.Connection, task_id: bytes) -> tuple[bool, bool]:
        """Whether this worker's lease on the task still holds (it is Running), and whether it has a result."""
        row = conn.execute(
            "SELECT status, lease_owner, EXISTS (SELECT 1 FROM results WHERE task_id = ?) FROM tasks WHERE task_id = ?",
            (task_id, task_id),
        ).fetchone()
        return row is not None and row[0] == "running" and row[1] == self.owner, bool(row and row[2])

    def _commit(self, claim: _Claim, result: TaskResult) -> None:
        from mesatee.node.node import store_result  # the node owns the results' layout

        blob_ids = {slot: self.blobs.put(output.file) for slot, output in result.outputs.items()}
        committed = False
        with self.db.transaction() as conn:
            holds, has_result = self._lease(conn, claim.task_id)
            if holds:
                # The first committed result wins: a result already there came from an earlier run of this task.
                if not has_result:
                    store_result(conn, claim.task_id, result, blob_ids)
                    committed = True
                self._finish(conn, claim.task_id, "Finished", audit.ACCEPTED, "", current="Running")
        if not committed:
            with self.db.transaction() as conn:  # a late run: its output blobs go unless something else uses them
                for blob_id in blob_ids.values():
                    if not blob_referenced(conn, blob_id):
                        self.blobs.delete(blob_id)
        self._changed()

    def _end(self, claim: _Claim, status: str, detail: str, *, outcome: str) -> None:
        with self.db.transaction() as conn:
            if self._holds(conn, claim.task_id):
                self._finish(conn, claim.task_id, status, outcome, detail)
        self._changed()

    @staticmethod
    def _finish(
        conn: sqlite3.Connection, task_id: bytes, status: str, outcome: str, detail: str, *, current: str | None = None
    ) -> None:
        transition(conn, task_id, status, error=detail or None, current=current)
        audit.append(conn, party=ENCLAVE, action="task.run", target=task_id.hex(), outcome=outcome, detail=detail)

    def _retry_or_fail(self, claim: _Claim, reason: str) -> None:
        with self.db.transaction() as conn:
            if not self._holds(conn, claim.task_id):
                return
            if claim.attempt >= self.config.max_attempts:
                detail = f"infrastructure failure after {claim.attempt} attempts: {reason}"
                self._finish(conn, claim.task_id, "Failed", audit.REFUSED, detail)
            else:
                self._restage(conn, claim.task_id, f"attempt {claim.attempt} failed: {reason}", attempt=claim.attempt)
        self._changed()

    def _restage(
        self, conn: sqlite3.Connection, task_id: bytes, reason: str, *, attempt: int = 0, refund: bool = False
    ) -> None:
        transition(conn, task_id, "Staged")
        delay = self.config.retry_delay * (2 ** max(0, attempt - 1)) if attempt else 0.0
        conn.execute(
            "UPDATE tasks SET not_before = ?, lease_until = NULL, deadline = NULL, attempts = attempts - ? "
            "WHERE task_id = ?",
            (time.time() + delay, 1 if refund else 0, task_id),
        )
        audit.append(conn, party=SCHEDULER, action="task.restage", target=task_id.hex(), outcome=audit.ACCEPTED,
                     detail=reason)  # fmt: skip

    # ----------------------------------------------------------------------- the supervisor

    def _supervise(self) -> None:
        interval = min(self.config.lease / 4, 1.0)
        while not self._stopping.wait(interval):
            try:
                self._tick()
            except Exception as exc:  # a busy or failing database: the next tick tries again; leases leave margin
                log.error("supervisor: %s: %s", type(exc).__name__, exc)

    def _tick(self) -> None:
        now = time.time()
        with self._workers_lock:
            busy = [w.task_id for w in self._workers if w.task_id is not None]
        if busy:  # only the runs a worker is on: a run no worker finishes must let its lease run out
            with self.db.transaction(durable=False) as conn:  # a renewal lost to a power cut only runs a task again
                conn.executemany(
                    "UPDATE tasks SET lease_until = ? WHERE task_id = ? AND status = 'running' AND lease_owner = ?",
                    [(now + self.config.lease, task_id, self.owner) for task_id in busy],
                )
        late = "SELECT task_id, deadline, started_at FROM tasks WHERE status = 'running' AND deadline < ?"
        if self.db.connection().execute(late, (now,)).fetchone() is not None:
            with self.db.transaction() as conn:
                for task_id, deadline, started_at in conn.execute(late, (now,)).fetchall():
                    detail = f"timed out: still running after {deadline - started_at:.0f} s"
                    self._finish(conn, task_id, "Failed", audit.REFUSED, detail)
        self._recover(only_dead=False)
        self._replace_abandoned()
        self._changed()

    def _recover(self, *, only_dead: bool) -> None:
        """Stage again the tasks whose runs were lost: leases of dead processes of this host, and (unless
        ``only_dead``) every lease that ran out; fail those that used up their attempts."""
        running = "SELECT task_id, lease_owner, lease_until, attempts FROM tasks WHERE status = 'running'"

        def lost(rows: list[tuple[bytes, str | None, float | None, int]], now: float) -> list[tuple[bytes, int, str]]:
            found = []
            for task_id, owner, lease_until, attempts in rows:
                if owner is not None and owner != self.owner and _owner_alive(owner) is False:
                    found.append((task_id, attempts, "its worker's process ended"))
                elif not only_dead and (lease_until is None or lease_until < now):
                    found.append((task_id, attempts, "its worker stopped renewing the lease"))
            return found

        if not lost(self.db.connection().execute(running).fetchall(), time.time()):
            return  # the usual case, without taking the write lock
        with self.db.transaction() as conn:
            for task_id, attempts, reason in lost(conn.execute(running).fetchall(), time.time()):
                if attempts >= self.config.max_attempts:
                    detail = f"infrastructure failure after {attempts} attempts: {reason}"
                    self._finish(conn, task_id, "Failed", audit.REFUSED, detail)
                else:
                    self._restage(conn, task_id, f"attempt {attempts} lost: {reason}")

    def _replace_abandoned(self) -> None:
        """Workers whose task left Running (canceled, timed out) are still in the enclave: replace them now."""
        with self._workers_lock:
            busy = [w for w in self._workers if w.task_id is not None and not w.abandoned]
        if not busy:
            return
        conn = self.db.connection()
        for worker in busy:
            task_id = worker.task_id
            if task_id is not None and not self._holds(conn, task_id):
                worker.abandoned = True
                if not self._stopping.is_set():
                    self._spawn()
