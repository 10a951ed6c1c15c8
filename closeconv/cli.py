"""The `closeconv` command line."""

from __future__ import annotations

import atexit
import gc
import importlib
import os
import sys
import threading

import click

from closeconv import __version__

# Each subcommand lives in closeconv.commands.<name>, which exposes `command` (a click command
# or group). A module is imported only when its command runs (or for `--help`): `closeconv run`
# need not import the dashboard's or the generator's dependencies at every start.
COMMANDS = ("dashboard", "demo", "generate", "intake", "run", "workflows")


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands or cmd_name not in COMMANDS:
            return self.commands.get(cmd_name)
        command = importlib.import_module(f"closeconv.commands.{cmd_name}").command
        self.add_command(command, cmd_name)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
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


# Commands after which the console script skips the interpreter's teardown (`console`): `run`,
# whose every second counts toward the incremental-run target. The others (servers, intake,
# generators) exit the normal way.
FAST_EXIT_COMMANDS = ("run",)


def console() -> None:
    """The `closeconv` console script: `main`; after a FAST_EXIT_COMMANDS command, exit without
    tearing the interpreter down.

    After a run, finalizing the interpreter (freeing its ~2,000 modules, its last garbage
    collections over their objects) took 0.6-0.7 s of every `closeconv run`. This does what a
    normal exit does that anyone can see (thread shutdown, atexit handlers, flushing stdout and
    stderr), then ends the process: `run` closes every file and connection it opens. In-process
    callers (tests) call `main` itself; an exception other than SystemExit exits the normal way."""
    if sys.argv[1:2] == [] or sys.argv[1] not in FAST_EXIT_COMMANDS:
        main()
        return
    # No cyclic garbage collection while the run imports its ~2,000 modules: each full collection
    # walks every object they made (4 a +1% run at 5M, ~0.5 s in all). pipelines.runner turns it
    # back on, with those objects frozen, once the job is built (`end_of_imports`).
    gc.disable()
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code
    except BaseException:
        gc.unfreeze()  # exits the normal way: its teardown then frees every object, as without the freeze
        raise
    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr)  # as the interpreter does for sys.exit("message")
        code = 1
    # What the interpreter's own exit does first, in its order (both are the hooks it calls):
    # thread-pool shutdown hooks and the joining of non-daemon threads, then atexit handlers.
    threading._shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more can be written
            pass
    os._exit(code)
