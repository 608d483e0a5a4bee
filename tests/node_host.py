"""A node with three admitted parties, each with a Client: the world of the node's workflow tests.

``NodeWorld.api`` is what the clients talk to: the in-process ``Node`` here;
the service tests give the same world a remote node instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

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
