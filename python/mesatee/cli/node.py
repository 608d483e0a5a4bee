"""``mesatee node``: the operator's commands on a node folder (local, audited as the operator)."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import click

import mesatee
from mesatee.cli.common import NONCE, PARTY_ID, CommandError, MesateeGroup, open_node, read_identity, when, write_output

NODE_PATH = click.Path(file_okay=False, path_type=Path)


@click.group(cls=MesateeGroup)
def node() -> None:
    """Operate a node: create it, admit and revoke parties, run its workers, check its audit log."""


@node.command()
@click.argument("path", type=NODE_PATH)
def init(path: Path) -> None:
    """Create a node in PATH (mode 0700) with its enclave, and print what parties must trust."""
    existed = (path / "node.db").is_file()
    with mesatee.Node(path, workers=0) as created:
        identity = created.enclave_identity
    click.echo(f"node:      {path}{' (already there)' if existed else ''}")
    click.echo(f"mrenclave: {identity.mrenclave.hex()}")
    click.echo(f"platform:  {identity.platform}{' (debug)' if identity.debug else ''}")
    if identity.platform == "software":
        click.echo(
            "a software platform: parties also need --allow-software and its root (`mesatee platform export-root`)"
        )


@node.command()
@click.argument("path", type=NODE_PATH)
@click.argument("identity_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", default="", help="A name for the party (shown by `mesatee node parties`).")
def admit(path: Path, identity_file: Path, name: str) -> None:
    """Admit the party whose identity is IDENTITY_FILE (from `mesatee party identity`), or re-admit it."""
    identity = read_identity(identity_file)
    with open_node(path) as opened:
        opened.admit(identity, name=name)
    click.echo(f"admitted {identity.hex}{f' ({name})' if name else ''}")


@node.command()
@click.argument("path", type=NODE_PATH)
@click.argument("party_id", type=PARTY_ID)
def revoke(path: Path, party_id: bytes) -> None:
    """Withdraw PARTY_ID's admission: its requests are refused from now on."""
    with open_node(path) as opened:
        opened.revoke(party_id)
    click.echo(f"revoked {party_id.hex()}")


@node.command()
@click.argument("path", type=NODE_PATH)
def parties(path: Path) -> None:
    """List the parties ever admitted: id, status, when, name."""
    with open_node(path) as opened:
        records = opened.parties()
    for record in records:
        status = "admitted" if record.admitted else f"revoked {when(record.revoked_at)}"
        click.echo(f"{record.party_id.hex()}  {status:<9}  since {when(record.admitted_at)}  {record.name}")


@node.command()
@click.argument("path", type=NODE_PATH)
@click.option("--workers", type=click.IntRange(1, 256), default=1, show_default=True, help="Enclave worker threads.")
@click.option(
    "--grace",
    type=click.FloatRange(0),
    default=30.0,
    show_default=True,
    help="Seconds running tasks may take to finish on shutdown; those still running go back to the queue.",
)
def run(path: Path, workers: int, grace: float) -> None:
    """Run the node's enclave workers until Ctrl-C or SIGTERM, then stop them gracefully.

    Any number of processes may run workers on one node; each staged task is run by one of them.
    """
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with open_node(path, workers=workers) as running:
            click.echo(f"running {workers} worker(s) on {path}; Ctrl-C or SIGTERM stops them", err=True)
            stop.wait()
            click.echo("stopping…", err=True)
            running.close(grace)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    click.echo("stopped", err=True)


@node.command()
@click.argument("path", type=NODE_PATH)
@click.option(
    "--expect",
    metavar="SEQ:HASH",
    help="The head published earlier (as this command prints it): also detects a cut or rewritten log.",
)
def audit(path: Path, expect: str | None) -> None:
    """Verify the audit log's hash chain and print its head (publish it elsewhere; check it later with --expect)."""
    expected = None
    if expect is not None:
        seq, _, digest = expect.partition(":")
        try:
            expected = (int(seq), bytes.fromhex(digest))
        except ValueError:
            raise click.BadParameter("expected SEQ:HASH, e.g. 42:9f86…", param_hint="--expect") from None
    with open_node(path) as opened:
        head = opened.verify_audit_log(expected_head=expected)
    click.echo(f"audit log verified: {head.entries} entries")
    click.echo(f"head: {head.seq}:{head.hash.hex()}")


@node.command()
@click.argument("path", type=NODE_PATH)
@click.option("--nonce", type=NONCE, required=True, help="The verifier's fresh challenge, in hex (at most 64 bytes).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True, help="The file.")
def evidence(path: Path, nonce: bytes, output: Path) -> None:
    """Write the node's enclave evidence for NONCE (check it with `mesatee enclave verify`)."""
    if not nonce:
        raise CommandError("--nonce must not be empty: evidence without a fresh challenge can be replayed")
    with open_node(path) as opened:
        write_output(output, opened.evidence(nonce))
    click.echo(f"wrote {output}")
