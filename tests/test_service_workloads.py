"""Whole workloads through the service: three banks in separate processes join their data; 50 clients at once."""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from pathlib import Path

import pytest

import mesatee
from conftest import REPO
from mesatee.parties import Party, PartyIdentity
from node_host import NodeWorld, ServiceProcess, served_world

BANKS = REPO.parent / "shared" / "fixtures" / "teaclave" / "private_join_and_compute" / "three_party_data"
PASSPHRASE = "bank passphrase"


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[NodeWorld, ServiceProcess]]:
    monkeypatch.setenv("MESATEE_HOME", str(tmp_path / "home"))
    with served_world(tmp_path / "node", workers=4) as served:
        yield served


def bank(conn: Connection, url: str, party_file: str, mrenclave: bytes, data: bytes, creator: bool) -> None:
    """One bank's process: its own party file, its own client of the service; steps as the test says."""
    party = Party.load(party_file, PASSPHRASE)
    policy = mesatee.AttestationPolicy(
        mrenclave=mrenclave, allow_software=True, trusted_roots=[mesatee.platform_root_certificate()]
    )
    client = mesatee.Client(url, party, policy)
    conn.send((party.identity.to_bytes(), client.encrypt_and_upload(data)))
    if creator:
        identities, datasets = conn.recv()
        banks = [PartyIdentity.from_bytes(identity) for identity in identities]
        manifest = client.new_manifest(
            "private_join_and_compute",
            inputs={f"input_data{i}": (banks[i], datasets[i]) for i in range(len(banks))},
            outputs={f"output_data{i}": [banks[i]] for i in range(len(banks))},
            arguments={"num_user": len(banks)},
        )
        conn.send(client.create_task(manifest))
    task_id = conn.recv()
    client.grant(task_id)
    client.approve(task_id)
    conn.send("approved")
    if creator:
        conn.recv()
        client.invoke(task_id)
    opened = client.result(task_id, wait=60)
    conn.send((opened.return_value, dict(opened.outputs)))


def test_three_banks_in_separate_processes_join_their_data(
    served: tuple[NodeWorld, ServiceProcess], tmp_path: Path
) -> None:
    world, service = served
    spawn = multiprocessing.get_context("spawn")
    pipes, processes = [], []
    for i, name in enumerate(("bank_a", "bank_b", "bank_c")):
        party = Party.generate()
        world.node.admit(party.identity, name=name)
        party.save(tmp_path / f"{name}.party", PASSPHRASE)
        ours, theirs = spawn.Pipe()
        data = (BANKS / f"{name}.txt").read_bytes()
        args = (theirs, service.url, str(tmp_path / f"{name}.party"), world.policy.mrenclave, data, i == 0)
        process = spawn.Process(target=bank, args=args, daemon=True)
        process.start()
        pipes.append(ours)
        processes.append(process)
    try:
        uploaded = [pipe.recv() for pipe in pipes]
        pipes[0].send(([identity for identity, _ in uploaded], [dataset for _, dataset in uploaded]))
        task_id = pipes[0].recv()
        for pipe in pipes:
            pipe.send(task_id)
        assert [pipe.recv() for pipe in pipes] == ["approved"] * 3
        pipes[0].send("invoke")
        results = [pipe.recv() for pipe in pipes]
    finally:
        for process in processes:
            process.join(30)
            if process.is_alive():
                process.kill()
    assert [process.exitcode for process in processes] == [0, 0, 0]
    for i, (returned, outputs) in enumerate(results):
        assert returned == b"3 users join the task in total."
        assert list(outputs) == [f"output_data{i}"]
        assert b"c : 470000\n" in outputs[f"output_data{i}"]
    assert len({bytes(next(iter(outputs.values()))) for _, outputs in results}) == 1
    world.node.verify_audit_log()


def test_fifty_concurrent_clients_all_finish_and_nothing_is_lost(served: tuple[NodeWorld, ServiceProcess]) -> None:
    world, service = served
    alice_party, bob_party = world.parties["alice"], world.parties["bob"]

    def echo(i: int) -> tuple[bytes, bytes]:
        alice = mesatee.Client(service.url, alice_party, world.policy)
        bob = mesatee.Client(service.url, bob_party, world.policy)
        try:
            manifest = alice.new_manifest("echo", function_owner=bob_party.identity, arguments={"message": f"m{i}"})
            task_id = alice.create_task(manifest)
            alice.approve(manifest)
            bob.approve(task_id)
            return task_id, alice.run(task_id, timeout=120).return_value
        finally:
            alice.node.close()  # type: ignore[attr-defined]
            bob.node.close()  # type: ignore[attr-defined]

    with ThreadPoolExecutor(50) as pool:
        done = list(pool.map(echo, range(50)))
    assert [value for _, value in done] == [f"m{i}".encode() for i in range(50)]
    rows = world.node.db.connection().execute("SELECT task_id, status, attempts FROM tasks").fetchall()
    assert sorted(task_id for task_id, _, _ in rows) == sorted(task_id for task_id, _ in done)
    assert {(status, attempts) for _, status, attempts in rows} == {("done", 1)}
    world.node.verify_audit_log()
