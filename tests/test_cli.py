"""The mesatee command: a whole two-party task by the CLI alone, offline files, evidence, and its errors."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

import mesatee
from conftest import REPO
from mesatee.cli import cli

PSI = REPO.parent / "shared" / "fixtures" / "teaclave" / "ordered_set_intersect"


def mesatee_cli(*args: str | Path, input: str | None = None, status: int = 0) -> Result:
    """Run ``mesatee ARGS`` in process; check its exit status, and that an error is one line without a traceback."""
    result = CliRunner().invoke(cli, [str(arg) for arg in args], input=input)
    assert result.exit_code == status, (result.output, result.exception)
    if status:
        assert "Traceback" not in result.output
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    else:
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


@dataclass
class CliWorld:
    """A node created by `mesatee node init`, alice and bob made and admitted by the CLI; env set for both."""

    folder: Path
    ids: dict[str, str]


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliWorld]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MESATEE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MESATEE_PASSPHRASE", "correct horse")
    mesatee_cli("platform", "init")
    mesatee_cli("platform", "export-root", "-o", "root.pem")
    init = mesatee_cli("node", "init", "node").stdout
    mrenclave = next(line.split()[1] for line in init.splitlines() if line.startswith("mrenclave:"))
    ids = {}
    for name in ("alice", "bob"):
        ids[name] = mesatee_cli("party", "create", f"{name}.party").stdout.strip()
        assert mesatee_cli("party", "identity", f"{name}.party", "-o", f"{name}.id").stdout.strip() == ids[name]
        mesatee_cli("node", "admit", "node", f"{name}.id", "--name", name)
    for name, value in {"NODE": "node", "MRENCLAVE": mrenclave, "ROOT": "root.pem", "ALLOW_SOFTWARE": "1"}.items():
        monkeypatch.setenv(f"MESATEE_{name}", value)
    yield CliWorld(tmp_path, ids)


def test_two_parties_intersect_by_the_cli_alone(world: CliWorld) -> None:
    alice, bob = world.ids["alice"], world.ids["bob"]
    parties = mesatee_cli("node", "parties", "node").stdout
    assert f"{alice}  admitted" in parties and parties.rstrip().endswith("bob")
    data1 = mesatee_cli("dataset", "upload", PSI / "psi0.txt", "--party", "alice.party").stdout.strip()
    data2 = mesatee_cli("dataset", "upload", PSI / "psi1.txt", "--party", "bob.party").stdout.strip()
    # the new dataset key was saved back into the party file
    assert data1 in mesatee_cli("party", "show", "alice.party").stdout
    policy = mesatee_cli(
        "dataset", "policy", data2, "--party", "bob.party",
        "--allow-function", "ordered_set_intersect", "--allow-participant", alice, "--max-uses", "2",
    ).stdout  # fmt: skip
    assert "max_uses: at most 2 task(s)" in policy
    assert data2 in mesatee_cli("dataset", "list", "--party", "bob.party").stdout

    task_id = mesatee_cli(
        "task", "create", "ordered_set_intersect", "--party", "alice.party", "--identity", "bob.id",
        "--input", f"input_data1={alice}:{data1}", "--input", f"input_data2={bob[:8]}:{data2}",
        "--output", f"output_result1={alice}", "--output", f"output_result2={bob}",
        "--arg", "order=ascending", "--manifest-out", "task.manifest",
    ).stdout.strip()  # fmt: skip
    shown = mesatee_cli("task", "show", task_id, "--party", "bob.party").stdout
    assert "status:    Created" in shown and f"{bob} (you) owner of input 'input_data2' [not approved]" in shown
    for name in ("alice", "bob"):
        assert mesatee_cli("task", "grant", task_id, "--party", f"{name}.party").stdout.startswith("granted input")
    mesatee_cli("task", "approve", task_id, "--party", "alice.party", input="y\n")
    mesatee_cli("task", "approve", task_id, "--party", "bob.party", "--manifest", "task.manifest", "--yes")
    assert f"{task_id}  Approved" in mesatee_cli("task", "list", "--party", "bob.party").stdout

    invoked = mesatee_cli("task", "invoke", task_id, "--party", "alice.party", "--wait", "--wait-timeout", "60")
    assert invoked.stdout == "Finished\n" and "Finished after" in invoked.stderr
    result = mesatee_cli("task", "result", task_id, "--party", "alice.party", "-o", "out")
    assert result.stdout == "3 common items\n" and (world.folder / "out" / "output_result1").read_bytes() == b"0101010"
    result = mesatee_cli("task", "result", task_id, "--party", "bob.party")
    assert "output output_result2: 5 bytes" in result.stderr
    assert "audit log verified" in mesatee_cli("node", "audit", "node").stdout


def test_errors_are_one_line_without_keys(world: CliWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESATEE_PASSPHRASE", "wrong")
    assert "alice.party: wrong passphrase" in mesatee_cli("task", "list", "--party", "alice.party", status=1).stderr
    monkeypatch.setenv("MESATEE_PASSPHRASE", "correct horse")
    assert "does not exist" in mesatee_cli("task", "list", "--party", "nobody.party", status=2).stderr
    unknown = mesatee_cli("task", "show", "00" * 16, "--party", "alice.party", status=1).stderr
    assert unknown == f"error: no task {'00' * 16}\n"
    assert "no node here" in mesatee_cli("task", "list", "--party", "alice.party", "--node", "typo", status=1).stderr
    assert not (world.folder / "typo").exists()
    secret = "ab" * 15 + "zz"
    bad_key = mesatee_cli("file", "decrypt", "root.pem", "x", "--key", secret, status=2).stderr
    assert secret not in bad_key and "the value is not hex" in bad_key
    assert "exists" in mesatee_cli("party", "create", "alice.party", status=1).stderr
    os.mkfifo(world.folder / "pipe")
    assert "not a regular file" in mesatee_cli("party", "identity", "alice.party", "-o", "pipe", status=1).stderr


def test_files_round_trip_in_both_formats(tmp_path: Path) -> None:
    plain = tmp_path / "plain.txt"
    plain.write_bytes(b"password")
    encrypted = mesatee_cli("file", "encrypt", plain, tmp_path / "c.mtef").stdout
    key = next(line.split()[1] for line in encrypted.splitlines() if line.startswith("key:"))
    mesatee_cli("file", "decrypt", tmp_path / "c.mtef", tmp_path / "back.txt", "--key", key)
    assert (tmp_path / "back.txt").read_bytes() == b"password"
    mesatee_cli("file", "decrypt", tmp_path / "c.mtef", tmp_path / "no", "--key", "00" * 32, status=1)
    assert not (tmp_path / "no").exists()

    # Teaclave's known vector (CASES.md): key and IV of zeros, "password"
    teaclave = ("--format", "teaclave-aes-gcm-128", "--key", "00" * 16, "--iv", "00" * 12)
    out = mesatee_cli("file", "encrypt", plain, tmp_path / "c.tc", *teaclave).stdout
    assert (tmp_path / "c.tc").read_bytes() == base64.b64decode("c+mpvRfZ0fboR0j3rTgOGDBiubSzlCt9")
    assert "tag: e84748f7ad380e183062b9b4b3942b7d" in out
    mesatee_cli("file", "decrypt", tmp_path / "c.tc", tmp_path / "back2.txt", *teaclave)
    assert (tmp_path / "back2.txt").read_bytes() == b"password"
    assert "--iv" in mesatee_cli("file", "decrypt", tmp_path / "c.tc", tmp_path / "x", *teaclave[:4], status=2).stderr


def test_evidence_is_verified_offline(world: CliWorld) -> None:
    mesatee_cli("node", "evidence", "node", "--nonce", "c0ffee", "-o", "evidence.bin")
    verified = mesatee_cli("enclave", "verify", "evidence.bin", "--nonce", "c0ffee").stdout
    assert "evidence verified" in verified and f"mrenclave:       {os.environ['MESATEE_MRENCLAVE']}" in verified
    assert "nonce mismatch" in mesatee_cli("enclave", "verify", "evidence.bin", "--nonce", "c0ffef", status=1).stderr
    os.environ.pop("MESATEE_ALLOW_SOFTWARE")
    assert "error:" in mesatee_cli("enclave", "verify", "evidence.bin", "--nonce", "c0ffee", status=1).stderr


def test_a_policy_from_a_toml_file(world: CliWorld) -> None:
    dataset = mesatee_cli("dataset", "upload", PSI / "psi0.txt", "--party", "alice.party").stdout.strip()
    (world.folder / "policy.toml").write_text(
        f'allowed_functions = ["ordered_set_intersect:1", {{ name = "echo" }}]\n'
        f'allowed_output_recipients = ["{world.ids["bob"]}"]\nexpires_at = "2100-01-01"\n'
    )
    shown = mesatee_cli("dataset", "policy", dataset, "--party", "alice.party", "--file", "policy.toml").stdout
    assert "only echo (any version, a public built-in); ordered_set_intersect (version 1" in shown
    assert "2100-01-01 00:00:00 UTC" in shown
    mesatee_cli("dataset", "delete", dataset, "--party", "alice.party")
    assert mesatee_cli("dataset", "list", "--party", "alice.party").stdout == ""


def test_a_node_url_is_passed_to_the_client(world: CliWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []

    class RecordingClient:
        def __init__(self, node: object, party: object, policy: object) -> None:
            seen.append(node)

        def tasks(self) -> list[object]:
            return []

    monkeypatch.setattr(mesatee, "Client", RecordingClient)
    mesatee_cli("task", "list", "--party", "alice.party", "--node", "https://node.example:8443")
    assert seen == ["https://node.example:8443"]


def test_node_run_serves_tasks_invoked_from_other_processes(world: CliWorld) -> None:
    command = [sys.executable, "-m", "mesatee.cli"]
    runner = subprocess.Popen([*command, "node", "run", "node"], stderr=subprocess.PIPE, text=True)
    try:
        assert "running 1 worker" in (runner.stderr.readline() if runner.stderr else "")
        task_id = mesatee_cli(
            "task", "create", "echo", "--party", "alice.party", "--identity", "bob.id",
            "--function-owner", world.ids["bob"], "--arg", "message=over there",
        ).stdout.strip()  # fmt: skip
        for name in ("alice", "bob"):
            mesatee_cli("task", "approve", task_id, "--party", f"{name}.party", "--yes")
        assert mesatee_cli("task", "invoke", task_id, "--party", "alice.party").stdout == "Staged\n"
        watched = subprocess.run(
            [*command, "task", "watch", task_id, "--party", "bob.party", "--workers", "0", "--wait-timeout", "60"],
            capture_output=True, text=True, timeout=90,
        )  # fmt: skip
        assert watched.returncode == 0 and watched.stdout == "Finished\n", watched.stderr
        assert mesatee_cli("task", "result", task_id, "--party", "bob.party").stdout == "over there\n"
    finally:
        runner.send_signal(signal.SIGTERM)
        assert runner.wait(timeout=60) == 0
    assert runner.stderr is not None and "stopped" in runner.stderr.read()


def _commands(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _commands(command, (*path, name))
        else:
            yield (*path, name)


def test_every_command_has_help() -> None:
    commands = list(_commands(cli))
    assert len(commands) > 30
    for path in commands:
        shown = mesatee_cli(*path, "--help").stdout
        assert shown.startswith("Usage: ") and len(shown.splitlines()) > 3, path


def test_the_party_commands_work_against_a_served_node(world: CliWorld) -> None:
    from node_host import ServiceProcess, free_port

    refused = mesatee_cli("serve", "--node", "node", "--host", "0.0.0.0", status=1).stderr
    assert "not a loopback address" in refused
    port = free_port()
    with open(world.folder / "serve.log", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "mesatee.cli", "serve", "--node", "node", "--port", str(port)],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    service = ServiceProcess(process, f"http://127.0.0.1:{port}", world.folder / "serve.log")
    try:
        service.wait_ready()
        url = ("--node", service.url)
        uploaded = mesatee_cli("dataset", "upload", PSI / "psi0.txt", "--party", "alice.party", *url)
        assert "uploading" in uploaded.stderr
        assert uploaded.stdout.strip() in mesatee_cli("dataset", "list", "--party", "alice.party", *url).stdout
        task_id = mesatee_cli(
            "task", "create", "echo", "--party", "alice.party", "--identity", "bob.id",
            "--function-owner", world.ids["bob"], "--arg", "message=across the network", *url,
        ).stdout.strip()  # fmt: skip
        for name in ("alice", "bob"):
            mesatee_cli("task", "approve", task_id, "--party", f"{name}.party", "--yes", *url)
        invoked = mesatee_cli("task", "invoke", task_id, "--party", "alice.party", "--wait", *url)
        assert invoked.stdout == "Finished\n"
        assert mesatee_cli("task", "result", task_id, "--party", "bob.party", *url).stdout == "across the network\n"
    finally:
        service.stop()
    assert process.returncode == 0
