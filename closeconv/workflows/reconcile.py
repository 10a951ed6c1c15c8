"""Reconciliation: a recorded update from a workflow that is the same change as a replayed action."""

from __future__ import annotations

import polars as pl

from closeconv.workflows.tables import RECONCILE_WINDOW_S


def reconcile(actions: pl.DataFrame, trig: pl.DataFrame, recorded: pl.DataFrame) -> pl.DataFrame:
    """Set ``reconciled_event_order`` on ``actions`` (general case: several actions per trigger).

    ``trig`` gives each action's contact and time (event_order, contact_id, t_us).
    """
    actions = actions.drop("reconciled_event_order", strict=False)
    empty = actions.with_columns(pl.lit(None, dtype=pl.Int64).alias("reconciled_event_order"))
    if actions.height == 0 or recorded.height == 0:
        return empty
    acts = actions.join(trig.select("event_order", "contact_id", "t_us"), on="event_order", how="left")
    per_trigger = (
        acts.group_by("event_order")
        .agg(
            pl.col("contact_id").first(),
            pl.col("t_us").first().alias("a_at_us"),
            pl.len().alias("n"),
            pl.col("to_assignee_id").first().alias("a_to"),
            pl.col("step_index").first().alias("a_step"),
            pl.col("wf_index").first().alias("a_wf"),
        )
        .sort("event_order")
        .rename({"event_order": "a_order"})
    )
    rec = recorded.with_columns(pl.col("rec_order").shift(1).over("contact_id").alias("prev_rec_order"))
    j = rec.join_asof(
        per_trigger, left_on="rec_order", right_on="a_order", by="contact_id", strategy="backward", check_sortedness=False
    ).filter(pl.col("a_order").is_not_null())
    window_us = RECONCILE_WINDOW_S * 1_000_000
    j = j.filter(pl.col("prev_rec_order").is_null() | (pl.col("prev_rec_order") < pl.col("a_order")) | (pl.col("n") > 1))
    single = j.filter(
        (pl.col("n") == 1)
        & (pl.col("rec_source") == "workflow")
        & pl.col("rec_assignee").eq_missing(pl.col("a_to"))
        & ((pl.col("rec_at_us") - pl.col("a_at_us")) <= window_us)
    ).select(
        pl.col("a_order").alias("event_order"),
        pl.col("a_wf").alias("wf_index"),
        pl.col("a_step").alias("step_index"),
        pl.col("rec_order").alias("reconciled_event_order"),
    )
    matches = [single.cast({"wf_index": pl.Int32, "step_index": pl.Int32, "reconciled_event_order": pl.Int64})]
    multi = j.filter(pl.col("n") > 1)
    if multi.height:
        # Greedy, in order: the recorded updates following the trigger (all from workflows,
        # within the window) are matched to the trigger's actions as a subsequence.
        todo: dict[int, list[tuple[int, int, str | None]]] = {}
        for o, wi, si, to in (
            acts.join(multi.select(pl.col("a_order").alias("event_order")).unique(), on="event_order")
            .sort("event_order", "wf_index", "step_index")
            .select("event_order", "wf_index", "step_index", "to_assignee_id")
            .iter_rows()
        ):
            todo.setdefault(o, []).append((wi, si, to))
        rows = []
        for (o,), recs in multi.sort("rec_order").group_by(["a_order"], maintain_order=True):
            pending = todo.get(o, [])
            p = 0
            for rec_order, src, asg, at_us, a_at_us in recs.select(
                "rec_order", "rec_source", "rec_assignee", "rec_at_us", "a_at_us"
            ).iter_rows():
                if src != "workflow" or at_us - a_at_us > window_us:
                    break
                hit = next((k for k in range(p, len(pending)) if pending[k][2] == asg), None)
                if hit is None:
                    break
                rows.append((o, pending[hit][0], pending[hit][1], rec_order))
                p = hit + 1
        if rows:
            matches.append(
                pl.DataFrame(
                    rows,
                    schema={"event_order": pl.Int64, "wf_index": pl.Int32, "step_index": pl.Int32, "reconciled_event_order": pl.Int64},
                    orient="row",
                )
            )
    m = pl.concat(matches)
    return actions.join(m, on=["event_order", "wf_index", "step_index"], how="left")

