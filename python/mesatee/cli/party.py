"""``mesatee party``: a party's keys, kept in a passphrase-encrypted file, and its public identity."""

from __future__ import annotations

from pathlib import Path

import click

from mesatee.cli.common import CommandError, MesateeGroup, load_party, passphrase, passphrase_file_option, write_output
from mesatee.parties import Party

PARTY_FILE = click.Path(dir_okay=False, path_type=Path)


@click.group(cls=MesateeGroup)
def party() -> None:
    """A party's keys: create them, show them, export the identity an operator admits."""


@party.command()
@click.argument("file", type=PARTY_FILE)
@passphrase_file_option
@click.option("--force", is_flag=True, help="Replace an existing file (its keys are lost).")
def create(file: Path, passphrase_file: Path | None, force: bool) -> None:
    """Create a party with fresh keys in FILE (encrypted under a passphrase; mode 0600) and print its id."""
    if file.exists() and not force:
        raise CommandError(f"{file} exists; a party file holds keys that cannot be recreated (--force replaces it)")
    created = Party.generate()
    created.save(file, passphrase(passphrase_file, confirm=True))
    click.echo(created.party_id.hex())


@party.command()
@click.argument("file", type=PARTY_FILE)
@passphrase_file_option
def show(file: Path, passphrase_file: Path | None) -> None:
    """Show the party in FILE: its id, public keys and the datasets whose keys it holds."""
    loaded, _ = load_party(file, passphrase_file)
    identity = loaded.identity
    click.echo(f"party id:     {identity.hex}")
    click.echo(f"signing key:  {identity.signing_key.hex()}  (Ed25519, public)")
    click.echo(f"hpke key:     {identity.hpke_key.hex()}  (X25519, public)")
    click.echo(f"dataset keys: {len(loaded.datasets)}")
    for dataset_id in loaded.datasets:
        click.echo(f"  {dataset_id.hex()}")


@party.command()
@click.argument("file", type=PARTY_FILE)
@passphrase_file_option
@click.option("-o", "--output", type=PARTY_FILE, required=True, help="Where to write the identity.")
def identity(file: Path, passphrase_file: Path | None, output: Path) -> None:
    """Export the public identity of the party in FILE (for `mesatee node admit` and other parties' tasks)."""
    loaded, _ = load_party(file, passphrase_file)
    write_output(output, loaded.identity.to_bytes())
    click.echo(loaded.party_id.hex())
