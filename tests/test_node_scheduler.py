"""The persistent scheduler: retries, refusals, timeouts, cancellation, crash recovery, several processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from mesatee.core.enclave import Enclave
from mesatee.errors import BoundaryError, InvalidArgumentError
from mesatee.node import Node, SchedulerConfig
from node_host import NodeWorld, open_world

HERE = Path(__file__).parent


class FaultyEnclave:
    """A real enclave behind a host that fails (``failures`` calls raise) or stalls (``stall`` calls wait)."""

    def __init__(self, enclave: Enclave, *, failures: int = 0, stall: int = 0, stall_for: float = 0.0) -> None:
        self.enclave = enclave
        self.identity = enclave.identity
        self.failures, self.stall, self.stall_for = failures, stall, stall_for
        self.calls = 0
        self._lock = threading.Lock()

    def evidence(self, nonce: bytes) -> bytes:
        return self.enclave.evidence(nonce)

    def invoke(self, invocation: bytes) -> bytes:
        with self._lock:
            self.calls += 1
            fail, stall = self.failures > 0, self.stall > 0
            self.failures -= fail
            self.stall -= stall
        if stall:
            time.sleep(self.stall_for)
        if fail:
            raise BoundaryError("injected: the enclave crashed")
        return self.enclave.invoke(invocation)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MESATEE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def faulty(home: Path, tmp_path: Path):
    """``make(config, **faults)``: a node world whose workers share one faulty enclave."""
    worlds: list[NodeWorld] = []
    enclave = Enclave(state_file=tmp_path / "enclave.state")

    def make(config: SchedulerConfig, **faults) -> tuple[NodeWorld, FaultyEnclave]:
        wrapper = FaultyEnclave(enclave, **faults)
        worlds.append(open_world(tmp_path / "node", enclave=wrapper, scheduler=config))
        return worlds[-1], wrapper

    yield make
    for world in worlds:
        world.node.close()
    enclave.close()


def audit(world: NodeWorld, action: str) -> list[tuple[str, str, str]]:
    rows = world.node.db.connection().execute(
        "SELECT target, outcome, detail FROM audit WHERE action = ? ORDER BY seq", (action,)
    )
    return list(rows)


QUICK = SchedulerConfig(workers=1, lease=1.0, poll_interval=0.01, retry_delay=0.01)


def test_an_infrastructure_failure_is_retried(faulty) -> None:
    world, enclave = faulty(QUICK, failures=1)
    alice = world.client("alice")
    task_id = world.echo(message="again")
    assert alice.run(task_id, timeout=30).return_value == b"again"
    assert alice.task(task_id).attempts == 2 and enclave.calls == 2
    ((target, _outcome, detail),) = audit(world, "task.restage")
    assert target == task_id.hex() and "attempt 1 failed: BoundaryError: injected" in detail
    assert [o for _, o, _ in audit(world, "task.run")] == ["accepted"]


def test_infrastructure_failures_use_up_the_attempts(faulty) -> None:
    from dataclasses import replace

    world, enclave = faulty(replace(QUICK, max_attempts=3), failures=10)
    view = world.client("alice").wait(_invoked(world), 30)
    assert view.status == "Failed" and view.attempts == 3 and enclave.calls == 3
    assert view.error == "infrastructure failure after 3 attempts: BoundaryError: injected: the enclave crashed"


def test_a_task_the_enclave_refuses_is_never_retried(faulty) -> None:
    world, enclave = faulty(QUICK)
    alice = world.client("alice")
    task_id = world.echo(message="x" * 10)
    manifest = alice.task(task_id).manifest
    bad = alice.new_manifest("echo", function_owner=world.parties["bob"].identity, arguments={"mesage": "typo"})
    assert bad.arguments != manifest.arguments
    bad_id = alice.create_task(bad)
    alice.approve(bad)
    world.client("bob").approve(bad_id)
    view = alice.wait(_invoked(world, bad_id), 30)
    assert view.status == "Failed" and view.attempts == 1 and enclave.calls == 1
    assert "mesage" in view.error
    assert audit(world, "task.restage") == []


def test_a_task_past_its_timeout_fails_and_its_worker_is_replaced(faulty) -> None:
    world, enclave = faulty(QUICK, stall=1, stall_for=3.0)
    alice = world.client("alice")
    slow = world.echo(message="slow")
    alice.invoke(slow, timeout=1)
    _wait_status(world, slow, "Running")
    quick = world.echo(message="quick")
    started = time.monotonic()
    assert alice.run(quick, timeout=10).return_value == b"quick"  # a fresh worker while the stalled call goes on
    assert time.monotonic() - started < 2.5
    view = alice.wait(slow, 10)
    assert view.status == "Failed" and view.error.startswith("timed out: still running after")
    time.sleep(2.5)  # the stalled call returns: its result is discarded
    assert alice.task(slow).status == "Failed" and not alice.task(slow).has_result
    assert enclave.calls == 2


def test_a_running_task_can_be_cancelled_and_its_result_is_discarded(faulty) -> None:
    world, _enclave = faulty(QUICK, stall=1, stall_for=1.5)
    alice = world.client("alice")
    task_id = _invoked(world)
    _wait_status(world, task_id, "Running")
    alice.cancel(task_id)
    assert alice.wait(task_id, 5).status == "Canceled"
    time.sleep(2.0)
    view = alice.task(task_id)
    assert view.status == "Canceled" and not view.has_result
    assert audit(world, "task.run") == []


def test_a_run_left_by_a_dead_process_is_staged_again_at_start(home: Path, tmp_path: Path) -> None:
    world = open_world(tmp_path / "node", workers=0)
    task_id = _invoked(world)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    owner = f"{os.uname().nodename}|{int(dead.stdout)}|gone"
    with world.node.db.transaction() as conn:
        conn.execute(
            "UPDATE tasks SET status = 'running', attempts = 1, lease_owner = ?, lease_until = ? WHERE task_id = ?",
            (owner, time.time() + 3600, task_id),
        )
    world.node.close()
    node = Node(tmp_path / "node", workers=1)  # the lease would last an hour: the dead pid is noticed at start
    world = NodeWorld(node, world.policy, world.parties, node)
    view = _wait_done(world, task_id)
    assert view.status == "Finished" and view.attempts == 2
    assert "process ended" in audit(world, "task.restage")[0][2]
    world.node.close()


def test_a_lease_that_runs_out_is_staged_again(faulty) -> None:
    world, _enclave = faulty(QUICK)
    task_id = world.echo()
    with world.node.db.transaction() as conn:
        conn.execute(
            "UPDATE tasks SET status = 'running', attempts = 1, lease_owner = 'elsewhere|1|x', lease_until = ? "
            "WHERE task_id = ?",
            (time.time() - 1, task_id),
        )
    world.node.scheduler.wake()
    assert _wait_done(world, task_id).status == "Finished"
    assert "stopped renewing the lease" in audit(world, "task.restage")[0][2]


def test_the_scheduler_settings_are_checked() -> None:
    for bad in ({"workers": -1}, {"lease": 0}, {"max_attempts": 0}, {"task_timeout": "1"}, {"retry_delay": -1}):
        with pytest.raises(InvalidArgumentError):
            SchedulerConfig(**bad)


# --------------------------------------------------------------------------- several processes


def _spawn_worker(path: Path, workers: int, delay: float) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, str(HERE / "node_worker.py"), str(path), str(workers), str(delay)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "started"
    return process


def _exactly_once(world: NodeWorld, task_ids: list[bytes]) -> None:
    conn = world.node.db.connection()
    assert conn.execute("SELECT count(*) FROM results").fetchone()[0] == len(task_ids)
    runs = [t for t, outcome, _ in audit(world, "task.run") if outcome == "accepted"]
    assert sorted(runs) == sorted(t.hex() for t in task_ids)  # one committed run per task, none twice
    statuses = {row[0] for row in conn.execute("SELECT status FROM tasks")}
    assert statuses == {"done"}
    world.node.verify_audit_log()


@pytest.mark.slow
def test_a_node_killed_mid_run_finishes_every_task_once_after_restart(home: Path, tmp_path: Path) -> None:
    world = open_world(tmp_path / "node", workers=0)
    task_ids = [_invoked(world, message=f"task {i}") for i in range(30)]
    victim = _spawn_worker(world.node.path, 2, 0.1)
    conn = world.node.db.connection()
    deadline = time.monotonic() + 60
    while conn.execute("SELECT count(*) FROM tasks WHERE status = 'done'").fetchone()[0] < 6:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    running = conn.execute("SELECT count(*) FROM tasks WHERE status = 'running'").fetchone()[0]
    assert running >= 1  # killed mid-run
    survivor = _spawn_worker(world.node.path, 2, 0.0)
    assert survivor.communicate(timeout=120)[0].startswith("runs")
    _exactly_once(world, task_ids)
    assert any("process ended" in detail for _, _, detail in audit(world, "task.restage"))
    world.node.close()


@pytest.mark.slow
def test_two_node_processes_over_one_folder_run_200_tasks_each_once(home: Path, tmp_path: Path) -> None:
    world = open_world(tmp_path / "node", workers=0)
    task_ids = [_invoked(world, message=f"task {i}") for i in range(200)]
    workers = [_spawn_worker(world.node.path, 1, 0.002) for _ in range(2)]
    runs = [int(w.communicate(timeout=120)[0].split()[-1]) for w in workers]
    assert all(r > 0 for r in runs) and sum(runs) == 200, runs
    _exactly_once(world, task_ids)
    for task_id in task_ids[:3]:
        assert world.client("bob").result(task_id).return_value.startswith(b"task ")
    world.node.close()


@pytest.mark.slow
def test_5000_small_tasks_run_in_bounded_memory(home: Path, tmp_path: Path) -> None:
    world = open_world(tmp_path / "node", workers=2)
    alice = world.client("alice")
    process = psutil.Process()

    def batch(n: int) -> None:
        ids = [world.echo(message=str(i)) for i in range(n)]
        for task_id in ids:
            alice.invoke(task_id)
        for task_id in ids:
            assert alice.wait(task_id, 60).status == "Finished"

    batch(500)
    warm = process.memory_info().rss
    for _ in range(9):
        batch(500)
    grown = process.memory_info().rss - warm
    assert world.node.db.connection().execute("SELECT count(*) FROM results").fetchone()[0] == 5000
    assert grown < 32 << 20, f"RSS grew {grown >> 20} MiB over 4,500 tasks"
    world.node.close()


# --------------------------------------------------------------------------- helpers


def _invoked(world: NodeWorld, task_id: bytes | None = None, *, message: str = "hello") -> bytes:
    task_id = task_id or world.echo(message=message)
    world.client("alice").invoke(task_id)
    return task_id


def _wait_status(world: NodeWorld, task_id: bytes, status: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while world.client("alice").task(task_id).status != status:
        assert time.monotonic() < deadline, f"never {status}"
        time.sleep(0.01)


def _wait_done(world: NodeWorld, task_id: bytes):
    return world.client("alice").wait(task_id, 30)


def test_a_watch_sees_a_change_made_while_it_read_the_task(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another connection commits between the watch's first read and its wait: the watch must see it (it once
    waited for the next, unrelated commit)."""
    import sqlite3

    from mesatee.node import sign_request

    world = open_world(tmp_path / "node", workers=0)
    task_id = _invoked(world)
    original = Node.get_task

    def racing_read(self: Node, request, task_id_: bytes):
        view = original(self, request, task_id_)
        other = sqlite3.connect(self.db.path, isolation_level=None)
        other.execute("UPDATE tasks SET status = 'cancelled' WHERE task_id = ?", (task_id_,))
        other.close()
        return view

    monkeypatch.setattr(Node, "get_task", racing_read)
    request = sign_request(world.parties["alice"], "task.view", task_id.hex())
    started = time.monotonic()
    view = world.node.watch_task(request, task_id, after="Staged", timeout=10)
    assert view.status == "Canceled" and time.monotonic() - started < 5
    world.node.close()


def test_a_run_the_database_fails_to_record_is_run_again_and_the_worker_lives(
    faulty, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database fails after the enclave ran (the result's commit, then the retry's): the worker survives, and
    the task's lease, no longer renewed, runs out: it is staged again and runs once more."""
    import sqlite3

    from mesatee.node.scheduler import Scheduler

    world, enclave = faulty(QUICK)
    failures = {"_commit": 1, "_retry_or_fail": 1}
    for name in failures:
        original = getattr(Scheduler, name)

        def failing(self, *args, _name=name, _original=original):
            if failures[_name]:
                failures[_name] -= 1
                raise sqlite3.OperationalError("disk I/O error")
            return _original(self, *args)

        monkeypatch.setattr(Scheduler, name, failing)
    alice = world.client("alice")
    task_id = _invoked(world)
    view = alice.wait(task_id, 30)
    assert view.status == "Finished" and view.attempts == 2 and enclave.calls == 2
    assert "stopped renewing the lease" in audit(world, "task.restage")[0][2]
    assert alice.run(world.echo(message="next"), timeout=30).return_value == b"next"  # the worker lives on
