"""Reconciliation: a recorded update from a workflow that is the same change as a replayed action."""

from __future__ import annotations

import polars as pl

from closeconv.workflows.tables import RECONCILE_WINDOW_S


def reconcile(actions: pl.DataFrame, trig: pl.DataFrame, recorded: pl.DataFrame) -> pl.DataFrame:
    """Set ``reconciled_pos`` on ``actions`` (general case: several actions per trigger).

    ``trig`` gives each action's contact and time (pos, contact_id, t_us). Triggers and
    recorded updates are named by their timeline ``pos``, which within a contact follows
    event_order.
    """
    actions = actions.drop("reconciled_pos", strict=False)
    empty = actions.with_columns(pl.lit(None, dtype=pl.Int64).alias("reconciled_pos"))
    if actions.height == 0 or recorded.height == 0:
        return empty
    acts = actions.join(trig.select("pos", "contact_id", "t_us"), on="pos", how="left")
    per_trigger = (
        acts.group_by("pos")
        .agg(
            pl.col("contact_id").first(),
            pl.col("t_us").first().alias("a_at_us"),
            pl.len().alias("n"),
            pl.col("to_assignee_id").first().alias("a_to"),
            pl.col("step_index").first().alias("a_step"),
            pl.col("wf_index").first().alias("a_wf"),
        )
        .sort("pos")
        .rename({"pos": "a_pos"})
    )
    rec = recorded.with_columns(pl.col("pos").shift(1).over("contact_id").alias("prev_rec_pos"))
    j = rec.join_asof(
        per_trigger, left_on="pos", right_on="a_pos", by="contact_id", strategy="backward", check_sortedness=False
    ).filter(pl.col("a_pos").is_not_null())
    window_us = RECONCILE_WINDOW_S * 1_000_000
    j = j.filter(pl.col("prev_rec_pos").is_null() | (pl.col("prev_rec_pos") < pl.col("a_pos")) | (pl.col("n") > 1))
    single = j.filter(
        (pl.col("n") == 1)
        & (pl.col("rec_source") == "workflow")
        & pl.col("rec_assignee").eq_missing(pl.col("a_to"))
        & ((pl.col("rec_at_us") - pl.col("a_at_us")) <= window_us)
    ).select(
        pl.col("a_pos").alias("pos"),
        pl.col("a_wf").alias("wf_index"),
        pl.col("a_step").alias("step_index"),
        pl.col("pos").alias("reconciled_pos"),
    )
    matches = [single.cast({"wf_index": pl.Int32, "step_index": pl.Int32, "reconciled_pos": pl.Int64})]
    multi = j.filter(pl.col("n") > 1)
    if multi.height:
        # Greedy, in order: the recorded updates following the trigger (all from workflows,
        # within the window) are matched to the trigger's actions as a subsequence.
        todo: dict[int, list[tuple[int, int, str | None]]] = {}
        for o, wi, si, to in (
            acts.join(multi.select(pl.col("a_pos").alias("pos")).unique(), on="pos")
            .sort("pos", "wf_index", "step_index")
            .select("pos", "wf_index", "step_index", "to_assignee_id")
            .iter_rows()
        ):
            todo.setdefault(o, []).append((wi, si, to))
        rows = []
        for (o,), recs in multi.sort("pos").group_by(["a_pos"], maintain_order=True):
            pending = todo.get(o, [])
            p = 0
            for rec_pos, src, asg, at_us, a_at_us in recs.select(
                "pos", "rec_source", "rec_assignee", "rec_at_us", "a_at_us"
            ).iter_rows():
                if src != "workflow" or at_us - a_at_us > window_us:
                    break
                hit = next((k for k in range(p, len(pending)) if pending[k][2] == asg), None)
                if hit is None:
                    break
                rows.append((o, pending[hit][0], pending[hit][1], rec_pos))
                p = hit + 1
        if rows:
            matches.append(
                pl.DataFrame(
                    rows,
                    schema={"pos": pl.Int64, "wf_index": pl.Int32, "step_index": pl.Int32, "reconciled_pos": pl.Int64},
                    orient="row",
                )
            )
    m = pl.concat(matches)
    return actions.join(m, on=["pos", "wf_index", "step_index"], how="left")

