"""Plays the untrusted host of a task for the tests: parties prepare, the host carries bytes to the enclave.

Everything here is what an honest host does; tests that cheat change the bytes
before they reach the enclave, bypassing every Python-side check.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import mesatee
from mesatee.core.attestation import AttestationPolicy, VerifiedClaims
from mesatee.core.manifest import EnclaveRequirement, FunctionRef, InputSlot, Manifest, TaskResult, encode_invocation
from mesatee.parties import OpenedResult, Party


@dataclass
class Task:
    manifest: Manifest
    participants: list[Party]
    approvals: dict[bytes, bytes] = field(default_factory=dict)
    grants: dict[str, bytes] = field(default_factory=dict)
    inputs: dict[str, bytes] = field(default_factory=dict)

    def invocation(self, *, manifest_bytes: bytes | None = None, now: int | None = None) -> bytes:
        return encode_invocation(
            self.manifest.to_bytes() if manifest_bytes is None else manifest_bytes,
            self.approvals,
            self.grants,
            self.inputs,
            int(time.time()) if now is None else now,
        )


def attest(enclave: mesatee.Enclave, platform_dir: Path, party: Party) -> VerifiedClaims:
    """What each party does before trusting an enclave: fresh nonce, its own policy."""
    import os

    nonce = os.urandom(32)
    policy = AttestationPolicy(
        mrenclave=enclave.identity.mrenclave,
        allow_software=True,
        trusted_roots=[mesatee.platform_root_certificate(platform_dir)],
    )
    return party.verify_enclave(enclave.evidence(nonce), policy, nonce=nonce)


def prepare(
    tmp_path: Path,
    claims: VerifiedClaims,
    creator: Party,
    function: str,
    *,
    arguments: dict | None = None,
    inputs: dict[str, tuple[Party, bytes]] | None = None,
    outputs: dict[str, list[Party]] | None = None,
    others: tuple[Party, ...] = (),
    enclaves: list[EnclaveRequirement] | None = None,
    expires_at: int | None = None,
) -> Task:
    """Encrypt the inputs, write the manifest, and collect every approval and grant."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    slots, files = {}, {}
    for slot, (owner, data) in (inputs or {}).items():
        src, dst = tmp_path / f"{slot}.plain", tmp_path / f"{slot}.mtef"
        src.write_bytes(data)
        encrypted = owner.encrypt_dataset(src, dst)
        slots[slot] = InputSlot(owner.party_id, encrypted.dataset_id)
        files[slot] = dst.read_bytes()
    owners = [owner for owner, _ in (inputs or {}).values()]
    everyone = [creator, *owners, *(p for ps in (outputs or {}).values() for p in ps), *others]
    participants = list({p.party_id: p for p in everyone}.values())
    manifest = Manifest.create(
        creator=creator.identity,
        function=FunctionRef(function, 1),
        enclaves=enclaves or [EnclaveRequirement(mrenclave=claims.mrenclave)],
        parties=[p.identity for p in participants],
        inputs=slots,
        outputs={slot: [p.identity for p in ps] for slot, ps in (outputs or {}).items()},
        arguments=arguments or {},
        expires_at=expires_at,
    )
    task = Task(manifest, [p for p in participants if p.party_id in manifest.participants])
    task.approvals = {p.party_id: p.approve(manifest) for p in task.participants}
    task.grants = {slot: owner.grant(manifest, slot, claims) for slot, (owner, _) in (inputs or {}).items()}
    task.inputs = files
    return task


def run(enclave: mesatee.Enclave, task: Task, claims: VerifiedClaims) -> dict[bytes, OpenedResult]:
    """Invoke, then let every participant verify and open what is addressed to it."""
    result = TaskResult.from_bytes(enclave.invoke(task.invocation()))
    return {p.party_id: p.open_result(result, task.manifest, claims) for p in task.participants}


def run_function(
    enclave: mesatee.Enclave,
    claims: VerifiedClaims,
    tmp_path: Path,
    function: str,
    creator: Party,
    *,
    arguments: dict | None = None,
    inputs: dict[str, tuple[Party, bytes]] | None = None,
    outputs: dict[str, list[Party]] | None = None,
) -> tuple[bytes | None, dict[str, bytes]]:
    """A whole task: the creator's return value, and every output as its owners opened it."""
    task = prepare(tmp_path, claims, creator, function, arguments=arguments, inputs=inputs, outputs=outputs)
    opened = run(enclave, task, claims)
    merged: dict[str, bytes] = {}
    for view in opened.values():
        merged.update(view.outputs)
    return opened[creator.party_id].return_value, merged
