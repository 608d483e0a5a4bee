"""``mesatee task``: create a task, approve it, grant its inputs, run it, follow it, fetch its result."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from mesatee.cli.common import (
    TASK_ID,
    CommandError,
    MesateeGroup,
    SessionOptions,
    printable,
    read_identity,
    session_options,
    when,
    workers_option,
    write_output,
)
from mesatee.core.manifest import Manifest
from mesatee.node import Client, TaskView
from mesatee.parties import PartyIdentity

_MIN_PREFIX = 8  # hex digits of a party id that may stand for it


@click.group(cls=MesateeGroup)
def task() -> None:
    """Tasks: create, show, list, approve, grant, invoke, watch, result, cancel."""


# --------------------------------------------------------------------------- creating


def _party(reference: str, known: dict[bytes, PartyIdentity]) -> PartyIdentity:
    """A party id in hex, or a prefix of at least 8 hex digits of exactly one known party's id."""
    reference = reference.strip().lower()
    matches = [identity for party_id, identity in known.items() if party_id.hex().startswith(reference)]
    if len(reference) < _MIN_PREFIX or len(matches) != 1:
        found = "none" if not matches else f"{len(matches)} parties"
        raise click.BadParameter(
            f"party {reference[:64]!r} matches {found} of yours and the --identity files "
            f"(give its identity file with --identity, and at least {_MIN_PREFIX} hex digits of its id)"
        )
    return matches[0]


def _split(spec: str, option: str, form: str) -> tuple[str, str]:
    slot, sep, value = spec.partition("=")
    if not sep or not slot or not value:
        raise click.BadParameter(f"{spec[:80]!r} is not {form}", param_hint=option)
    return slot, value


def _argument(spec: str) -> tuple[str, Any]:
    """``NAME=VALUE``: VALUE as JSON when it parses (3, 0.5, true, "3"), else the text as it is."""
    name, value = _split(spec, "--arg", "NAME=VALUE")
    try:
        return name, json.loads(value)
    except ValueError:
        return name, value


@task.command()
@click.argument("function")
@click.option("--version", "function_version", type=int, default=1, show_default=True, help="The function's version.")
@click.option("--function-owner", metavar="PARTY", help="The function's owner, for a function that is not a built-in.")
@click.option(
    "--arg",
    "arguments",
    multiple=True,
    metavar="NAME=VALUE",
    help='An argument (repeatable); VALUE is JSON if it parses (3, 0.5, true, "3"), else text.',
)
@click.option(
    "--input",
    "inputs",
    multiple=True,
    metavar="SLOT=PARTY:DATASET_ID",
    help="An input slot: the owner's party id and its dataset's id (repeatable).",
)
@click.option(
    "--output",
    "outputs",
    multiple=True,
    metavar="SLOT=PARTY[,PARTY...]",
    help="An output slot and the parties who receive it (repeatable).",
)
@click.option(
    "--identity",
    "identity_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Another participant's identity file, from `mesatee party identity` (repeatable).",
)
@click.option(
    "--lifetime",
    type=click.IntRange(1),
    default=3600,
    show_default=True,
    help="Seconds the task stays valid (approvals and runs after that are refused).",
)
@click.option(
    "--manifest-out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the manifest here, for the other participants to check.",
)
@session_options
def create(
    session: SessionOptions,
    function: str,
    function_version: int,
    function_owner: str | None,
    arguments: tuple[str, ...],
    inputs: tuple[str, ...],
    outputs: tuple[str, ...],
    identity_files: tuple[Path, ...],
    lifetime: int,
    manifest_out: Path | None,
) -> None:
    """Create a task running FUNCTION, created by this party, and print its id.

    PARTY is a party id in hex (or its first 8+ digits): this party's, or one of the --identity files'.
    The task accepts exactly the enclave this party verified.
    """
    identities = [read_identity(path) for path in identity_files]
    with session.open() as opened:
        known = {identity.party_id: identity for identity in (opened.party.identity, *identities)}
        input_slots = {}
        for spec in inputs:
            slot, value = _split(spec, "--input", "SLOT=PARTY:DATASET_ID")
            owner, _, dataset = value.rpartition(":")
            try:
                input_slots[slot] = (_party(owner, known), bytes.fromhex(dataset))
            except ValueError:
                raise click.BadParameter(f"{spec[:80]!r}: the dataset id is not hex", param_hint="--input") from None
        output_slots = {}
        for spec in outputs:
            slot, value = _split(spec, "--output", "SLOT=PARTY[,PARTY...]")
            output_slots[slot] = [_party(owner, known) for owner in value.split(",")]
        manifest = opened.client.new_manifest(
            function,
            parties=identities,
            inputs=input_slots,
            outputs=output_slots,
            arguments=dict(_argument(spec) for spec in arguments),
            lifetime=lifetime,
            version=function_version,
            function_owner=None if function_owner is None else _party(function_owner, known),
        )
        task_id = opened.client.create_task(manifest)
    if manifest_out is not None:
        write_output(manifest_out, manifest.to_bytes())
    click.echo(task_id.hex())


# --------------------------------------------------------------------------- looking


def _describe(view: TaskView, own_id: bytes) -> list[str]:
    """The task in words: every term an approval signs, and where the task stands."""
    manifest = view.manifest

    def who(party_id: bytes) -> str:
        return party_id.hex() + (" (you)" if party_id == own_id else "")

    function = manifest.function
    owner = "public built-in" if function.owner is None else f"owned by {who(function.owner)}"
    lines = [
        f"task:      {view.task_id.hex()}",
        f"status:    {view.status}" + (f": {printable(view.error)}" if view.error else ""),
        f"function:  {function.name} v{function.version} ({owner})",
        f"creator:   {who(manifest.creator)}",
        f"expires:   {when(manifest.expires_at)}",
        f"arguments: {json.dumps(_plain(manifest.arguments), sort_keys=True)}",
        "enclaves:  "
        + ", ".join(f"mrenclave {e.mrenclave.hex()}" if e.mrenclave else "by signer" for e in manifest.enclaves),
        "inputs:" + ("" if manifest.inputs else "    none"),
    ]
    for slot, input_ in manifest.inputs.items():
        granted = "granted" if slot in view.assigned else "not granted"
        lines.append(f"  {slot}: dataset {input_.dataset_id.hex()} of {who(input_.owner)} [{granted}]")
    lines.append("outputs:" + ("" if manifest.outputs else "   none"))
    for slot, output in manifest.outputs.items():
        lines.append(f"  {slot}: to {', '.join(who(owner) for owner in output.owners)}")
    lines.append("participants:")
    roles = manifest.roles()
    for party_id in manifest.participants:
        approved = "approved" if party_id in view.approved_by else "not approved"
        lines.append(f"  {who(party_id)} {roles[party_id]} [{approved}]")
    lines.append(f"result:    {'available' if view.has_result else 'none'}")
    return lines


def _plain(value: Any) -> Any:
    """The manifest's read-only arguments as JSON-friendly values (bytes as hex)."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


@task.command()
@click.argument("task_id", type=TASK_ID)
@session_options
def show(session: SessionOptions, task_id: bytes) -> None:
    """Show TASK_ID: its terms, who approved, which inputs are granted, its status."""
    with session.open() as opened:
        view = opened.client.task(task_id)
        lines = _describe(view, opened.party.party_id)
    click.echo("\n".join(lines))


@task.command("list")
@session_options
def list_(session: SessionOptions) -> None:
    """List the tasks this party takes part in: id, status, function, last change."""
    with session.open() as opened:
        views = opened.client.tasks()
    for view in views:
        name = view.manifest.function.name
        click.echo(f"{view.task_id.hex()}  {view.status:<12}  {name:<28}  {when(view.updated_at)}")


# --------------------------------------------------------------------------- preparing


@task.command()
@click.argument("task_id", type=TASK_ID)
@click.option(
    "--manifest",
    "manifest_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Approve only if the node's task is this manifest (e.g. the creator's --manifest-out).",
)
@click.option("--yes", "-y", is_flag=True, help="Do not ask: approve the terms shown.")
@session_options
def approve(session: SessionOptions, task_id: bytes, manifest_file: Path | None, yes: bool) -> None:
    """Approve TASK_ID: sign every term of its manifest (shown first; you are asked unless --yes)."""
    with session.open() as opened:
        view = opened.client.task(task_id)
        if manifest_file is not None:
            manifest = Manifest.from_bytes(manifest_file.read_bytes())
            if manifest != view.manifest:
                raise CommandError(f"the node's task {task_id.hex()} is not the manifest in {manifest_file}")
        click.echo("\n".join(_describe(view, opened.party.party_id)), err=True)
        if not yes and not click.confirm("Approve these terms?", err=True):
            raise CommandError("not approved")
        opened.client.approve(view.manifest)
    click.echo(f"approved {task_id.hex()}")


@task.command()
@click.argument("task_id", type=TASK_ID)
@click.option("--slot", "slots", multiple=True, help="Grant only this input slot (repeatable; default: all yours).")
@session_options
def grant(session: SessionOptions, task_id: bytes, slots: tuple[str, ...]) -> None:
    """Grant the verified enclave the keys of this party's inputs of TASK_ID, for this task only."""
    with session.open() as opened:
        granted = opened.client.grant(task_id, slots or None)
    if not granted:
        raise CommandError(f"task {task_id.hex()} has no input of yours to grant")
    click.echo(f"granted {', '.join(granted)}")


@task.command()
@click.argument("task_id", type=TASK_ID)
@session_options
def cancel(session: SessionOptions, task_id: bytes) -> None:
    """Cancel TASK_ID (its creator only; a running task's result is discarded)."""
    with session.open() as opened:
        opened.client.cancel(task_id)
    click.echo(f"canceled {task_id.hex()}")


# --------------------------------------------------------------------------- running


class _StatusLine:
    """The task's status and the time waited, on stderr: rewritten in place on a terminal, a line per change else."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.status = ""
        self.live = sys.stderr.isatty()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def update(self, status: str) -> None:
        changed, self.status = status != self.status, status
        if self.live:
            click.echo(f"\r\x1b[K{status}  {self.elapsed:.1f} s", nl=False, err=True)
        elif changed:
            click.echo(f"{status}  {self.elapsed:.1f} s", err=True)

    def finish(self) -> None:
        if self.live:
            click.echo(err=True)


def _follow(client: Client, task_id: bytes, timeout: float | None) -> TaskView:
    """Wait for the task to end, showing its statuses; a task that did not finish is an error."""
    line = _StatusLine()
    try:
        while True:
            if timeout is not None and line.elapsed >= timeout:
                raise CommandError(f"task {task_id.hex()} is still {line.status} after {timeout:g} s")
            tick = 1.0 if timeout is None else max(0.0, min(1.0, timeout - line.elapsed))
            try:
                view = client.wait(task_id, tick, on_progress=lambda v: line.update(v.status))
            except TimeoutError:
                line.update(line.status)  # the elapsed time moves on
                continue
            break
    finally:
        line.finish()
    if view.status != "Finished":
        detail = f": {printable(view.error)}" if view.error else ""
        raise CommandError(f"task {task_id.hex()} is {view.status}{detail}")
    click.echo(f"Finished after {line.elapsed:.1f} s", err=True)
    return view


_WAIT_TIMEOUT = click.option(
    "--wait-timeout", type=click.FloatRange(0), help="Give up waiting after this many seconds (default: never)."
)


@task.command()
@click.argument("task_id", type=TASK_ID)
@click.option("--timeout", type=click.IntRange(1), help="Seconds the run may take (default: the node's).")
@click.option("--wait", is_flag=True, help="Wait for the task to end, showing its statuses (exit 1 unless Finished).")
@_WAIT_TIMEOUT
@click.option(
    "--workers",
    type=click.IntRange(0, 256),
    help="With a node folder: enclave workers in this process (default: 1 with --wait, else 0).",
)
@session_options
def invoke(
    session: SessionOptions,
    task_id: bytes,
    timeout: int | None,
    wait: bool,
    wait_timeout: float | None,
    workers: int | None,
) -> None:
    """Queue TASK_ID to run (its creator only, once every participant approved and every input is granted).

    Without --wait a `mesatee node run` process (or another waiting client) runs it.
    """
    with session.open(workers=workers if workers is not None else int(wait)) as opened:
        status = opened.client.invoke(task_id, timeout=timeout)
        click.echo(status if not wait else _follow(opened.client, task_id, wait_timeout).status)


@task.command()
@click.argument("task_id", type=TASK_ID)
@_WAIT_TIMEOUT
@workers_option(1)
@session_options
def watch(session: SessionOptions, task_id: bytes, wait_timeout: float | None, workers: int) -> None:
    """Follow TASK_ID until it ends: its statuses as they change and the time waited (exit 1 unless Finished)."""
    with session.open(workers=workers) as opened:
        click.echo(_follow(opened.client, task_id, wait_timeout).status)


@task.command()
@click.argument("task_id", type=TASK_ID)
@click.option(
    "-o",
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write this party's output files here, one per slot (mode 0600).",
)
@session_options
def result(session: SessionOptions, task_id: bytes, output_dir: Path | None) -> None:
    """Fetch TASK_ID's result, verify the enclave's receipt, and open what is yours.

    The return value goes to stdout; your outputs to files in --output-dir, named after their slots.
    """
    with session.open() as opened:
        opened_result = opened.client.result(task_id, output_dir=output_dir)  # streamed to files, when asked
    for slot, data in opened_result.outputs.items():
        click.echo(f"output {slot}: {len(data)} bytes (write it with --output-dir)", err=True)
    for slot, path in opened_result.files.items():
        click.echo(f"output {slot}: {path.stat().st_size} bytes in {path}", err=True)
    for slot in sorted(opened_result.missing):
        click.echo(f"output {slot}: deleted from the node", err=True)
    value = opened_result.return_value
    if value is not None:
        sys.stdout.flush()  # the return value's bytes as they are, after any text already written
        sys.stdout.buffer.write(value if value.endswith(b"\n") else value + b"\n")
        sys.stdout.buffer.flush()


@task.command("delete-result")
@click.argument("task_id", type=TASK_ID)
@session_options
def delete_result(session: SessionOptions, task_id: bytes) -> None:
    """Delete TASK_ID's outputs you own from the node (for all their owners)."""
    with session.open() as opened:
        slots = opened.client.delete_result(task_id)
    click.echo(f"deleted {', '.join(slots)}")
