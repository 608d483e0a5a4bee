"""A node with three admitted parties, each with a Client: the world of the node's workflow tests.

``NodeWorld.api`` is what the clients talk to: the in-process ``Node``, or a
``RemoteNode`` of a service (``start_service``: ``mesatee.service.serve`` in a
subprocess on 127.0.0.1) serving the same folder.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

import mesatee
from mesatee.core.attestation import AttestationPolicy
from mesatee.node import Client, Node, NodeAPI
from mesatee.parties import Party

NAMES = ("alice", "bob", "carol")


@dataclass
class NodeWorld:
    node: Node
    policy: AttestationPolicy
    parties: dict[str, Party]
    api: NodeAPI
    clients: dict[str, Client] = field(default_factory=dict)

    def client(self, name: str) -> Client:
        if name not in self.clients:
            self.clients[name] = Client(self.api, self.parties[name], self.policy)
        return self.clients[name]

    def echo(self, creator: str = "alice", owner: str = "bob", message: str = "hello") -> bytes:
        """A 2-party echo task (the creator, and the function's owner), created and approved by both."""
        client = self.client(creator)
        manifest = client.new_manifest(
            "echo", function_owner=self.parties[owner].identity, arguments={"message": message}
        )
        task_id = client.create_task(manifest)
        client.approve(manifest)
        self.client(owner).approve(task_id)
        return task_id


def policy_for(node: Node, platform_dir: Path | None = None) -> AttestationPolicy:
    return AttestationPolicy(
        mrenclave=node.enclave_identity.mrenclave,
        allow_software=True,
        trusted_roots=[mesatee.platform_root_certificate(platform_dir)],
    )


def open_world(path: Path, *, api: NodeAPI | None = None, **node_options) -> NodeWorld:
    """A node in ``path`` (its own enclave on MESATEE_HOME's platform) with alice, bob and carol admitted."""
    node = Node(path, **node_options)
    parties = {name: Party.generate() for name in NAMES}
    for name, party in parties.items():
        node.admit(party.identity, name=name)
    return NodeWorld(node, policy_for(node), parties, api if api is not None else node)


# --------------------------------------------------------------------------- the service in a subprocess

_SERVE = (
    "import json, sys\n"
    "from mesatee.service import ServiceLimits, serve\n"
    "options = json.loads(sys.argv[1])\n"
    "serve(options.pop('node'), limits=ServiceLimits(**options.pop('limits')), **options)\n"
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class ServiceProcess:
    """``mesatee.service.serve`` running in a subprocess; its output goes to ``log``."""

    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the service exited ({self.process.returncode}):\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/v1/health", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the service did not answer within {timeout} s:\n{self.log.read_text()}")

    def kill(self) -> None:
        """SIGKILL: the server dies wherever it is."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        """SIGTERM (a graceful stop), SIGKILL if it takes too long."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


def start_service(node_path: Path, *, workers: int = 2, port: int | None = None, **limits: Any) -> ServiceProcess:
    """Serve the node folder on 127.0.0.1 (a free port) in a subprocess with ``workers`` enclave workers; ready."""
    port = port or free_port()
    log = node_path.parent / f"service-{port}.log"
    options = {"node": str(node_path), "host": "127.0.0.1", "port": port, "workers": workers, "limits": limits}
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", _SERVE, json.dumps(options)], stdout=out, stderr=subprocess.STDOUT, env=os.environ
        )
    service = ServiceProcess(process, f"http://127.0.0.1:{port}", log)
    service.wait_ready()
    return service


@contextmanager
def served_world(path: Path, *, workers: int = 2, **limits: Any) -> Iterator[tuple[NodeWorld, ServiceProcess]]:
    """A world whose clients talk to a service of the node in ``path`` (a subprocess with ``workers`` enclave
    workers: it runs the tasks; the world's own ``Node`` only admits parties and reads, workers=0); closed after."""
    from mesatee.node.remote import RemoteNode

    world = open_world(path, workers=0)
    try:
        service = start_service(path, workers=workers, **limits)
        try:
            with RemoteNode(service.url) as remote:
                world.api = remote
                yield world, service
        finally:
            service.stop()
    finally:
        world.node.close()
