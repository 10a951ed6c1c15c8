"""The `closeconv` command line."""

from __future__ import annotations

import click

from closeconv import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="closeconv")
def main() -> None:
    """closeconv: analytics for support teams that close conversations.

    \b
    Typical use:
      closeconv generate --conversations 2000 --out data/landing   # sample events
      closeconv run                                                 # build the warehouse
      closeconv workflows validate                                  # check workflows/*.yaml

    Settings can also come from the environment: CLOSECONV_LANDING, CLOSECONV_WAREHOUSE,
    CLOSECONV_WORKFLOWS, CLOSECONV_REFERENCE, CLOSECONV_TIMEZONE.
    """


def _register() -> None:
    # Subcommands live in closeconv.commands.*; each module exposes `command` (a click command or group).
    import importlib
    import pkgutil

    import closeconv.commands as pkg

    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{pkg.__name__}.{info.name}")
        command = getattr(module, "command", None)
        if command is not None:
            main.add_command(command)


_register()
