"""The node as a service: 2-party echo tasks through HTTP, and a large dataset's upload.

The service runs in a subprocess on 127.0.0.1 (``mesatee.service.serve``,
four enclave workers), as in the tests. Each client thread has its own
parties' clients and runs whole tasks: create, two approvals, invoke, wait,
fetch and open the result. Figures: tasks per second and the p50/p99 latency
of one task with 1, 8 and 32 clients at once, beside one client of an
in-process node (the same work without HTTP). The upload figure is a dataset
of 1 GiB (16 MiB with --quick) uploaded through ``RemoteNode`` (staged,
committed: hashed and linked into the blob store) beside the raw loopback rate of the
same bytes sent over a plain socket to a sink, measured in the same run.
"""

from __future__ import annotations

import hashlib
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import harness
import mesatee
from mesatee.node import Node, NodeAPI, sign_request
from mesatee.node.remote import RemoteNode
from mesatee.parties import Party

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from node_host import NodeWorld, open_world, start_service

CONCURRENCY = (1, 8, 32)
SEND_BLOCK = 1 << 20


def _echo_task(api: Callable[[], NodeAPI], world: NodeWorld, message: str) -> float:
    """One whole 2-party echo task through fresh clients of ``api()``; its seconds."""
    alice_party, bob_party = world.parties["alice"], world.parties["bob"]
    alice = mesatee.Client(api(), alice_party, world.policy)
    bob = mesatee.Client(alice.node, bob_party, world.policy)
    alice._claims = bob._claims = alice.verify_enclave()  # attested once per client, outside the timing
    started = time.perf_counter()
    manifest = alice.new_manifest("echo", function_owner=bob_party.identity, arguments={"message": message})
    task_id = alice.create_task(manifest)
    alice.approve(manifest)
    bob.approve(task_id)
    if alice.run(task_id, timeout=300).return_value != message.encode():
        raise RuntimeError("an echo task returned another message")
    elapsed = time.perf_counter() - started
    if isinstance(alice.node, RemoteNode):
        alice.node.close()
    return elapsed


def _load(api: Callable[[], NodeAPI], world: NodeWorld, clients: int, tasks: int) -> tuple[float, list[float]]:
    """``tasks`` echo tasks by ``clients`` threads at once: tasks per second, and each task's seconds."""
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        latencies = list(pool.map(lambda i: _echo_task(api, world, f"m{i}"), range(tasks)))
    return tasks / (time.perf_counter() - started), latencies


def _percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]


def _raw_loopback(path: Path) -> float:
    """Seconds to send the file's bytes over a loopback TCP socket to a sink that discards them."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)

        def sink() -> None:
            connection, _ = server.accept()
            buffer = bytearray(SEND_BLOCK)
            with connection:
                while connection.recv_into(buffer):
                    pass

        receiver = threading.Thread(target=sink)
        receiver.start()
        started = time.perf_counter()
        with socket.create_connection(server.getsockname()) as sender, open(path, "rb") as source:
            while block := source.read(SEND_BLOCK):
                sender.sendall(block)
        receiver.join()
        return time.perf_counter() - started


def _upload(url: str, party: Party, path: Path, digest: bytes) -> float:
    """Seconds to upload the file through RemoteNode: stream, stage, commit (hashed into the blob store)."""
    with RemoteNode(url) as node, open(path, "rb") as source:
        started = time.perf_counter()
        node.upload_dataset(sign_request(party, "dataset.upload", digest.hex(), body_digest=digest), source)
        return time.perf_counter() - started


def run(config: harness.Config) -> harness.Report:
    report = harness.Report()
    tasks_per_client = config.pick(8, 1)
    upload_size = config.pick(1 << 30, 16 << 20)
    saved_home = os.environ.get("MESATEE_HOME")
    with tempfile.TemporaryDirectory(prefix="mesatee-bench-service-") as folder:
        os.environ["MESATEE_HOME"] = str(Path(folder) / "home")
        world = open_world(Path(folder) / "node", workers=0)
        service = start_service(Path(folder) / "node", workers=4)
        local = Node(Path(folder) / "local", workers=4)
        for party in world.parties.values():
            local.admit(party.identity)
        try:
            baseline_rate, baseline_latencies = _load(lambda: local, world, 1, 4 * tasks_per_client)
            baseline_p50 = _percentile(baseline_latencies, 50) * 1e3
            for clients in CONCURRENCY:
                rate, latencies = _load(lambda: RemoteNode(service.url), world, clients, clients * tasks_per_client)
                p50, p99 = (_percentile(latencies, q) * 1e3 for q in (50, 99))
                for key, name, unit, value, baseline_name, baseline in (
                    ("rate", "tasks/s", "tasks/s", rate, "in process, 1 client", baseline_rate),
                    ("p50", "p50 latency", "ms/task", p50, "in process p50, 1 client", baseline_p50),
                    ("p99", "p99 latency", "ms/task", p99, "in process p50, 1 client", baseline_p50),
                ):
                    report.figures.append(
                        harness.Figure(
                            id=f"service.echo.c{clients}.{key}",
                            name=f"service echo, {clients} clients: {name}",
                            unit=unit,
                            value=value,
                            baseline_name=baseline_name,
                            baseline_value=baseline,
                        )
                    )
            data = Path(folder) / "dataset"
            digest = hashlib.sha256()
            with open(data, "wb") as out:
                for _ in range(upload_size // SEND_BLOCK):
                    block = os.urandom(SEND_BLOCK)
                    digest.update(block)
                    out.write(block)
            raw = _raw_loopback(data)
            uploaded = _upload(service.url, world.parties["alice"], data, digest.digest())
            mib = upload_size / (1 << 20)
            report.figures.append(
                harness.Figure(
                    id="service.upload",
                    name=f"upload of {mib:,.0f} MiB through the service",
                    unit="MiB/s",
                    value=mib / uploaded,
                    baseline_name="raw loopback socket to a sink",
                    baseline_value=mib / raw,
                )
            )
            report.notes.append(
                f"service: {os.cpu_count()} CPUs for the clients, the service and its 4 enclave workers; each task "
                "is 6 signed requests and a watch. The upload streams to the staging area (fsynced), then the commit "
                "hashes the staged file and links it into the blob store (no second write)."
            )
        finally:
            service.stop()
            local.close()
            world.node.close()
            if saved_home is None:
                os.environ.pop("MESATEE_HOME", None)
            else:
                os.environ["MESATEE_HOME"] = saved_home
    return report


BENCHMARKS = {"service": run}
