"""Layer 5: the ``mesatee`` command (click). It may import every layer below; nothing imports it.

See ``docs/cli.md``.
"""

from __future__ import annotations

import click

import mesatee
from mesatee.cli.common import RootGroup
from mesatee.cli.dataset import dataset
from mesatee.cli.enclave import enclave
from mesatee.cli.files import file
from mesatee.cli.node import node
from mesatee.cli.party import party
from mesatee.cli.platform import platform
from mesatee.cli.serve import serve
from mesatee.cli.task import task

__all__ = ["cli", "main"]


@click.group(cls=RootGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(mesatee.__version__, prog_name="mesatee")
def cli() -> None:
    """mesatee: secure multi-party computing in an enclave.

    An operator sets up a platform and a node (`platform`, `node`) and serves it (`serve`); each party makes its
    keys (`party`),
    uploads encrypted datasets (`dataset`) and creates, approves, grants and runs tasks (`task`).
    Every command has --help. Party commands read MESATEE_PARTY, MESATEE_NODE, MESATEE_MRENCLAVE,
    MESATEE_ROOT, MESATEE_ALLOW_SOFTWARE and MESATEE_PASSPHRASE when their options are not given.
    """


for group in (platform, node, serve, party, dataset, task, file, enclave):
    cli.add_command(group)


def main() -> None:
    """The console script's entry point."""
    cli(prog_name="mesatee")
