"""``mesatee dataset``: a party's encrypted datasets on a node, and their usage policies."""

from __future__ import annotations

import json
import sys
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from mesatee.cli.common import DATASET_ID, PARTY_ID, MesateeGroup, SessionOptions, session_options, when
from mesatee.node import FunctionRule, UsagePolicy


@click.group(cls=MesateeGroup)
def dataset() -> None:
    """Upload, list and delete a party's datasets; set their usage policies."""


@dataset.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@session_options
def upload(session: SessionOptions, file: Path) -> None:
    """Encrypt FILE under a fresh key, keep the key in the party file, upload the ciphertext; print its id.

    A progress bar on stderr follows the upload.
    """
    with (
        session.open() as opened,
        click.progressbar(length=1, label="uploading", file=sys.stderr) as bar,
    ):

        def progress(sent: int, total: int) -> None:
            bar.length = max(total, 1)
            bar.update(sent - bar.pos)

        dataset_id = opened.client.encrypt_and_upload(file, progress=progress)
        opened.save_party()  # the new key is in the keyring: without it the dataset can never be granted
    click.echo(dataset_id.hex())


@dataset.command("list")
@session_options
def list_(session: SessionOptions) -> None:
    """List this party's datasets on the node: id, size, uses, when uploaded, policy."""
    with session.open() as opened:
        views = opened.client.datasets()
    for view in views:
        policy = "no policy" if view.policy is None else "policy"
        click.echo(
            f"{view.dataset_id.hex()}  {view.size:>10} bytes  {view.uses} use(s)  {when(view.created_at)}  "
            f"{view.format}  {policy}"
        )
        for line in view.policy.explain() if view.policy is not None else ():
            click.echo(f"    {line}")


@dataset.command()
@click.argument("dataset_id", type=DATASET_ID)
@session_options
def delete(session: SessionOptions, dataset_id: bytes) -> None:
    """Delete DATASET_ID from the node (refused while a task that has not ended uses it)."""
    with session.open() as opened:
        opened.client.delete_dataset(dataset_id)
    click.echo(f"deleted {dataset_id.hex()}")


# --------------------------------------------------------------------------- policies


def _function_rule(spec: Any) -> FunctionRule:
    """``NAME[:VERSION[:OWNER_ID]]``, or the same as a map ``{name, version, owner}`` (version ``*``: any)."""
    if isinstance(spec, str):
        name, _, rest = spec.partition(":")
        version, _, owner = rest.partition(":")
        spec = {"name": name, "version": version or None, "owner": owner or None}
    if not isinstance(spec, dict) or set(spec) - {"name", "version", "owner"}:
        raise click.BadParameter(f"a function rule is NAME[:VERSION[:OWNER_ID]] or a map, not {spec!r}")
    version, owner = spec.get("version"), spec.get("owner")
    try:
        return FunctionRule(
            spec.get("name"),
            None if version in (None, "*") else int(version),
            None if owner is None else bytes.fromhex(owner),
        )
    except ValueError as exc:
        raise click.BadParameter(f"function rule {spec!r}: {exc}") from None


def _unix_time(value: str | int) -> int:
    """Unix seconds, or an ISO 8601 date or time (UTC unless it says otherwise)."""
    if isinstance(value, int) or value.isdigit():
        return int(value)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is neither Unix seconds nor an ISO 8601 date") from None
    return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp())


def _policy_file(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    try:
        fields = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise click.BadParameter(f"{path}: {exc}", param_hint="--file") from None
    known = {"allowed_functions", "allowed_co_participants", "allowed_output_recipients", "expires_at", "max_uses"}
    if not isinstance(fields, dict) or set(fields) - known:
        raise click.BadParameter(f"{path}: a policy has the fields {', '.join(sorted(known))}", param_hint="--file")
    return fields


def _party_ids(values: Any) -> frozenset[bytes]:
    if not isinstance(values, list):
        raise click.BadParameter(f"expected a list of party ids, not {values!r}")
    return frozenset(PARTY_ID.convert(value, None, None) for value in values)


@dataset.command()
@click.argument("dataset_id", type=DATASET_ID)
@click.option(
    "--file",
    "policy_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The policy as JSON, or TOML (*.toml): the fields allowed_functions, allowed_co_participants, "
    "allowed_output_recipients, expires_at, max_uses. Options given as well override its fields.",
)
@click.option(
    "--allow-function",
    "functions",
    multiple=True,
    metavar="NAME[:VERSION[:OWNER_ID]]",
    help="A function that may read the dataset (repeatable); a bare name is the public built-in, any version.",
)
@click.option(
    "--allow-participant",
    "participants",
    multiple=True,
    type=PARTY_ID,
    help="A party that may take part in its tasks, besides you (repeatable).",
)
@click.option(
    "--allow-recipient",
    "recipients",
    multiple=True,
    type=PARTY_ID,
    help="A party that may own its tasks' outputs, besides you (repeatable).",
)
@click.option("--expires", help="No task may use it after this: Unix seconds or an ISO 8601 date (UTC).")
@click.option("--max-uses", type=click.IntRange(0), help="How many tasks may use it in all.")
@session_options
def policy(
    session: SessionOptions,
    dataset_id: bytes,
    policy_file: Path | None,
    functions: tuple[str, ...],
    participants: tuple[bytes, ...],
    recipients: tuple[bytes, ...],
    expires: str | None,
    max_uses: int | None,
) -> None:
    """Set (replace) DATASET_ID's usage policy, and print it in words. No rule at all: no restriction."""
    fields = _policy_file(policy_file) if policy_file is not None else {}
    rules = {
        "allowed_functions": None
        if "allowed_functions" not in fields
        else tuple(_function_rule(spec) for spec in fields["allowed_functions"]),
        "allowed_co_participants": None
        if "allowed_co_participants" not in fields
        else _party_ids(fields["allowed_co_participants"]),
        "allowed_output_recipients": None
        if "allowed_output_recipients" not in fields
        else _party_ids(fields["allowed_output_recipients"]),
        "expires_at": None if "expires_at" not in fields else _unix_time(fields["expires_at"]),
        "max_uses": fields.get("max_uses"),
    }
    if functions:
        rules["allowed_functions"] = tuple(_function_rule(spec) for spec in functions)
    if participants:
        rules["allowed_co_participants"] = frozenset(participants)
    if recipients:
        rules["allowed_output_recipients"] = frozenset(recipients)
    if expires is not None:
        rules["expires_at"] = _unix_time(expires)
    if max_uses is not None:
        rules["max_uses"] = max_uses
    usage = UsagePolicy(**rules)
    with session.open() as opened:
        opened.client.set_policy(dataset_id, usage)
    click.echo(f"policy of {dataset_id.hex()}:")
    for line in usage.explain():
        click.echo(f"  {line}")
