"""`closeconv intake`: getting data in from the platforms and from other sources' exports."""

from __future__ import annotations

import click

from closeconv.commands.intake_sources import backfill_command, map_command


@click.group("intake")
def command() -> None:
    """Get events in: respond.io API backfill, declared mappings of other exports."""


command.add_command(backfill_command)
command.add_command(map_command)
