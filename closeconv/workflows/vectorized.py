"""The vectorized replay engine: unassign-only workflows, with no Python loop per event."""

from __future__ import annotations

import polars as pl

from closeconv.workflows.conditions import workflow_match_expr
from closeconv.workflows.models import Workflow


def vectorizable(workflows: list[Workflow]) -> bool:
    """True when the vectorized engine gives the exact answer: every step unassigns, and no
    once-per-contact workflow reads ``assignee_id``."""
    return all(
        w.unassign_only and not (w.settings.trigger_once_per_contact and w.uses_assignee_condition)
        for w in workflows
    )


# A trigger's run of workflow i, in the decisions frame: column run{i}; null = no run.
RUN_COMPLETED, RUN_SKIPPED_NO_ASSIGNEE, RUN_SKIPPED_ONCE = 0, 1, 2


def replay_vectorized(t: pl.DataFrame, wfs: list[Workflow]) -> pl.DataFrame:
    """Unassign-only workflows, fully vectorized: the decisions, one row per trigger of ``t``
    (``triggers.trigger_frame``), in its order.

    Per contact, a *segment* is a stretch with one recorded assignee r (between recorded
    updates). Before the first event of a segment where some workflow fires with assignee r,
    the assignee is r; at that event the first firing workflow (by id) unassigns; afterwards
    every event of the segment sees "no assignee". Once-per-contact workflows (which here do
    not read assignee_id) are blocked after their first match for the contact.

    Columns: pos, ck, t_us, ``run{i}`` per workflow (``RUN_*`` codes, null where workflow i
    does not run), ``act_wf`` (the workflow whose step unassigns at this trigger, null if
    none: at most one per trigger), ``from_assignee_id`` (the assignee it removes) and
    ``reconciled_pos`` (the pos of the recorded update that is the same change, if any).
    """
    n = len(wfs)
    none = pl.lit(None, dtype=pl.String)
    exprs, mr, mn = [], [], []
    for i, w in enumerate(wfs):
        if w.uses_assignee_condition:
            exprs += [workflow_match_expr(w, pl.col("r")).alias(f"mr{i}"), workflow_match_expr(w, none).alias(f"mn{i}")]
            mr.append(f"mr{i}")
            mn.append(f"mn{i}")
        else:
            exprs.append(workflow_match_expr(w).alias(f"mr{i}"))
            mr.append(f"mr{i}")
            mn.append(f"mr{i}")
    t = t.with_columns(
        *exprs,
        (pl.col("ck") != pl.col("ck").shift(1)).fill_null(True).alias("_ck_start"),
        pl.col("r_order").fill_null(-1).alias("seg"),
    )
    t = t.with_columns(
        (pl.col("_ck_start") | (pl.col("seg") != pl.col("seg").shift(1)).fill_null(True)).alias("_seg_start")
    )
    blocked = []
    for i, w in enumerate(wfs):
        if w.settings.trigger_once_per_contact:
            hit = pl.col(mr[i]).cast(pl.Int64)
            blocked.append(((cum_within(hit, pl.col("_ck_start")) - hit) > 0).alias(f"b{i}"))
        else:
            blocked.append(pl.lit(False).alias(f"b{i}"))
    t = t.with_columns(blocked)
    eff = pl.any_horizontal([pl.col(mr[i]) & ~pl.col(f"b{i}") & pl.col("r").is_not_null() for i in range(n)]).cast(pl.Int64)
    t = t.with_columns(eff.alias("eff"))
    t = t.with_columns(((cum_within(pl.col("eff"), pl.col("_seg_start")) - pl.col("eff")) > 0).alias("prior"))
    t = t.with_columns(
        [pl.when(pl.col("prior")).then(pl.col(mn[i])).otherwise(pl.col(mr[i])).alias(f"m{i}") for i in range(n)]
    )
    t = t.with_columns(
        (pl.col("prior") | pl.col("r").is_null()).alias("state_null"),
        pl.coalesce([pl.when(pl.col(f"m{i}") & ~pl.col(f"b{i}")).then(pl.lit(i, dtype=pl.Int32)) for i in range(n)]).alias("first_wf"),
    )
    act_wf = pl.when(~pl.col("state_null")).then(pl.col("first_wf"))
    t = t.with_columns(act_wf.cast(pl.Int32).alias("act_wf"))
    acted = pl.col("act_wf").is_not_null()
    return t.select(
        "pos", "ck", "t_us",
        *[
            pl.when(~pl.col(f"m{i}")).then(None)
            .when(pl.col(f"b{i}")).then(RUN_SKIPPED_ONCE)
            .when(pl.col("act_wf") == i).then(RUN_COMPLETED)
            .otherwise(RUN_SKIPPED_NO_ASSIGNEE).cast(pl.Int8).alias(f"run{i}")
            for i in range(n)
        ],
        "act_wf",
        pl.when(acted).then(pl.col("r")).alias("from_assignee_id"),
        pl.when(acted & pl.col("nr_unassign_ok")).then(pl.col("nr_pos")).cast(pl.Int64).alias("reconciled_pos"),
    )


def cum_within(x: pl.Expr, start: pl.Expr) -> pl.Expr:
    """Inclusive cumulative sum of ``x`` restarting where ``start`` is true (rows sorted by group)."""
    cs = x.cum_sum()
    return cs - pl.when(start).then(cs - x).forward_fill()
