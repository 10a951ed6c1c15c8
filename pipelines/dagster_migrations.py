"""What alembic (Dagster's schema migrations) costs a `closeconv run`, made smaller.

Importing this module before Dagster keeps alembic's import from loading Pygments: alembic
imports mako's error pages, and mako highlights their code with Pygments when it is installed
(~0.1-0.15 s of lexers a run; a run never renders a mako page, and mako falls back to plain text).

`one_script_scan` reads Dagster's migration scripts once per run, not once per SQLite file. Each
SQLite storage Dagster opens (runs.db, index.db, schedules.db, and the run's own event log file,
created and stamped by the run) asks alembic for the head revision of Dagster's migration
scripts, and alembic answers by building a new `ScriptDirectory` and loading every script (~110
Python files, ~50 ms) each time: 4 times a run. The scripts do not change while a process
runs, so inside `one_script_scan` every request for the same script folder gets the same
`ScriptDirectory`, whose revision map alembic keeps once loaded. What is checked and stamped is
unchanged: the same revisions, from the same scripts.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Iterator

# A None entry makes `import mako.ext.pygmentplugin` raise ImportError, mako's "no Pygments" case.
sys.modules.setdefault("mako.ext.pygmentplugin", None)

from alembic.config import Config
from alembic.script import ScriptDirectory


@contextmanager
def one_script_scan() -> Iterator[None]:
    """While inside, `ScriptDirectory.from_config` returns one directory per script location."""
    stock = ScriptDirectory.__dict__["from_config"]  # the classmethod itself, to put back
    load = ScriptDirectory.from_config
    loaded: dict[str, ScriptDirectory] = {}

    def from_config(config: Config) -> ScriptDirectory:
        location = config.get_main_option("script_location")
        if location is None:  # nothing to key on: alembic's own behaviour (and error)
            return load(config)
        if location not in loaded:
            loaded[location] = load(config)
        return loaded[location]

    ScriptDirectory.from_config = staticmethod(from_config)
    try:
        yield
    finally:
        ScriptDirectory.from_config = stock
