"""The vectorized replay engine: unassign-only workflows, with no Python loop per event."""

from __future__ import annotations

import polars as pl

from closeconv.workflows.conditions import workflow_match_expr
from closeconv.workflows.models import Workflow
from closeconv.workflows.tables import ACTIONS_SCHEMA, COMPLETED, RUNS_SCHEMA, SKIP_NO_ASSIGNEE, SKIP_ONCE, SKIPPED


def vectorizable(workflows: list[Workflow]) -> bool:
    """True when the vectorized engine gives the exact answer: every step unassigns, and no
    once-per-contact workflow reads ``assignee_id``."""
    return all(
        w.unassign_only and not (w.settings.trigger_once_per_contact and w.uses_assignee_condition)
        for w in workflows
    )


def replay_vectorized(t: pl.DataFrame, wfs: list[Workflow]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Unassign-only workflows, fully vectorized.

    Per contact, a *segment* is a stretch with one recorded assignee r (between recorded
    updates). Before the first event of a segment where some workflow fires with assignee r,
    the assignee is r; at that event the first firing workflow (by id) unassigns; afterwards
    every event of the segment sees "no assignee". Once-per-contact workflows (which here do
    not read assignee_id) are blocked after their first match for the contact.
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
    runs_parts, action_parts = [], []
    for i, w in enumerate(wfs):
        done = ~pl.col(f"b{i}") & ~pl.col("state_null") & (pl.col("first_wf") == i)
        sel = t.filter(pl.col(f"m{i}")).with_columns(done.alias("done"))
        runs_parts.append(
            sel.select(
                "pos",
                pl.lit(i, dtype=pl.Int32).alias("wf_index"),
                pl.when(pl.col("done")).then(pl.lit(COMPLETED)).otherwise(pl.lit(SKIPPED)).alias("outcome"),
                pl.when(pl.col(f"b{i}")).then(pl.lit(SKIP_ONCE))
                .when(pl.col("done")).then(none)
                .otherwise(pl.lit(SKIP_NO_ASSIGNEE)).alias("skip_reason"),
                pl.col("done").cast(pl.Int32).alias("action_count"),
            )
        )
        action_parts.append(
            sel.filter(pl.col("done")).select(
                "pos",
                pl.lit(i, dtype=pl.Int32).alias("wf_index"),
                pl.lit(0, dtype=pl.Int32).alias("step_index"),
                pl.lit(w.steps[0].id).alias("step_id"),
                pl.lit("unassign").alias("action"),
                pl.lit("unassign").alias("strategy"),
                pl.col("r").alias("from_assignee_id"),
                none.alias("to_assignee_id"),
                pl.when(pl.col("nr_unassign_ok")).then(pl.col("nr_pos")).otherwise(None).cast(pl.Int64).alias("reconciled_pos"),
            )
        )
    runs = pl.concat(runs_parts) if runs_parts else pl.DataFrame(schema=RUNS_SCHEMA)
    actions = pl.concat(action_parts) if action_parts else pl.DataFrame(schema=ACTIONS_SCHEMA)
    return runs.cast(RUNS_SCHEMA), actions.cast(ACTIONS_SCHEMA)


def cum_within(x: pl.Expr, start: pl.Expr) -> pl.Expr:
    """Inclusive cumulative sum of ``x`` restarting where ``start`` is true (rows sorted by group)."""
    cs = x.cum_sum()
    return cs - pl.when(start).then(cs - x).forward_fill()
