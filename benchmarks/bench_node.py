"""2-party echo tasks through the node: throughput, latency, and where each task's time goes.

The parties' own work (creating each task, both approvals) is done before the
clock starts: it happens on their machines. Then, with the node's scheduler
running 1 or 2 enclave workers in the same process:

- throughput: the creator's signed ``task.invoke`` requests for every task,
  one after another from one thread, while the workers drain the queue; the
  clock stops when the last task is Finished;
- latency: tasks invoked one at a time, from the creator's ``invoke`` to its
  ``wait`` seeing Finished (p50, p99);
- the split: CPU seconds of the whole process during the throughput run,
  against the seconds spent in enclave calls; the rest is the node's
  orchestration (requests, claims, inputs, commits, audit, in Python and
  SQLite; waits for the disk are not CPU and are not counted). Also, from the
  one-at-a-time run, how much of a worker's time on a task (claim, inputs,
  enclave call, commit) is outside the enclave call.

Baseline: the same tasks run by a bare loop with no node (encode the
invocation, call the enclave), on one thread: what the enclave alone allows.
Each figure is the median of several rounds.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import harness

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def _round(workers: int, tasks: int, serial: int, durable: bool = True) -> dict[str, float]:
    from mesatee.core.manifest import encode_invocation
    from mesatee.node import Node
    from node_host import NodeWorld, open_world

    with tempfile.TemporaryDirectory(prefix="mesatee-bench-node-") as folder:
        os.environ["MESATEE_HOME"] = str(Path(folder) / "home")
        world: NodeWorld = open_world(Path(folder) / "node", workers=0)
        alice = world.client("alice")
        ids = [world.echo(message=f"task {i}") for i in range(tasks + serial)]
        conn = world.node.db.connection()

        # The baseline: the enclave alone, the same invocations, one thread.
        invocations = []
        for task_id in ids[:tasks]:
            (manifest,) = conn.execute("SELECT manifest FROM tasks WHERE task_id = ?", (task_id,)).fetchone()
            approvals = dict(conn.execute("SELECT party_id, signature FROM approvals WHERE task_id = ?", (task_id,)))
            invocations.append(encode_invocation(manifest, approvals, {}, {}, int(time.time())))
        started = time.perf_counter()
        for invocation in invocations:
            world.node.enclave.invoke(invocation)
        bare = time.perf_counter() - started

        world.node.close()  # prepared without workers; now the node that runs them, the clients' node
        node = Node(Path(folder) / "node", workers=workers, durable=durable)
        world = NodeWorld(node, world.policy, world.parties, node)
        alice, conn = world.client("alice"), node.db.connection()
        cpu, started = time.process_time(), time.perf_counter()
        for task_id in ids[:tasks]:
            alice.invoke(task_id)
        while conn.execute("SELECT 1 FROM tasks WHERE status IN ('ready', 'running') LIMIT 1").fetchone():
            time.sleep(0.005)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        enclave, busy, runs = node.scheduler.enclave_seconds, node.scheduler.busy_seconds, node.scheduler.runs
        latencies = []
        for task_id in ids[tasks:]:
            started = time.perf_counter()
            alice.invoke(task_id)
            alice.wait(task_id, 60)
            latencies.append(time.perf_counter() - started)
        serial_enclave = node.scheduler.enclave_seconds - enclave
        serial_worker = node.scheduler.busy_seconds - busy
        node.close()
    assert runs == tasks, (runs, tasks)
    orchestration = cpu - enclave
    return {
        "worker_share": 1 - serial_enclave / serial_worker,
        "rate": tasks / elapsed,
        "bare": tasks / bare,
        "p50": statistics.median(latencies) * 1e3,
        "p99": statistics.quantiles(latencies, n=100)[98] * 1e3,
        "enclave_ms": enclave / tasks * 1e3,
        "cpu_ms": cpu / tasks * 1e3,
        "orchestration_ms": orchestration / tasks * 1e3,
        "share": orchestration / (orchestration + enclave),
    }


def run(config: harness.Config) -> harness.Report:
    report = harness.Report()
    tasks, serial = config.pick(1000, 60), config.pick(200, 20)
    rounds = config.pick(5, 2)
    for workers, durable in ((1, True), (2, True), (2, False)):
        samples = [_round(workers, tasks, serial, durable) for _ in range(rounds)]
        median = {key: statistics.median(s[key] for s in samples) for key in samples[0]}
        setting = f"{workers} worker(s)" + ("" if durable else ", durable=False")
        report.figures.append(
            harness.Figure(
                id=f"node.echo.{workers}w" + ("" if durable else ".nosync"),
                name=f"2-party echo tasks through the node, {setting}", unit="tasks/s", value=median["rate"],
                baseline_name="the enclave alone, no node, 1 thread", baseline_value=median["bare"],
                goal=harness.Goal(value_at_least=500) if workers == 2 and durable else None,
            )
        )  # fmt: skip
        report.notes.append(
            f"node, {setting}, {tasks} tasks x {rounds} rounds: {median['rate']:,.0f} tasks/s; latency "
            f"invoke->Finished one task at a time p50 {median['p50']:.2f} ms, p99 {median['p99']:.2f} ms; per task "
            f"{median['cpu_ms']:.2f} ms of CPU: {median['enclave_ms']:.2f} ms in the enclave, "
            f"{median['orchestration_ms']:.2f} ms of node orchestration ({median['share'] * 100:.0f}%, goal < 50%); "
            f"of a worker's time on a task (claim to commit, one task at a time) "
            f"{median['worker_share'] * 100:.0f}% is outside the enclave."
        )
    return report


BENCHMARKS = {"node": run}
