"""Progress lines for long steps: to Dagster's log and to the `closeconv.progress` logger.

`closeconv run` attaches a console handler to that logger, so a person sees each step as it
finishes with its counts, while Dagster's own verbose event log stays quiet.
"""

from __future__ import annotations

import logging
import time

progress_logger = logging.getLogger("closeconv.progress")


def report(context, message: str, started: float | None = None) -> None:
    if started is not None:
        message = f"{message} [{time.perf_counter() - started:.1f}s]"
    if context is not None:
        context.log.info(message)
    progress_logger.info(message)
