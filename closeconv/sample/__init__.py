"""Deterministic sample data: conversation events in the event contract (v1, spec §3).

The generator simulates a support workspace (4 channels, 3 teams of 4 agents, returning
contacts, a working-hours load pattern, long-tailed response times, bots, workflows,
broadcasts, assignment changes, "ok thank you" reopens, conversations left open) and writes
flat event records as JSON Lines (optionally gzipped), CSV or Parquet.

Guarantees:
- Deterministic: the same arguments give byte-identical files. Randomness comes only from
  `random.Random` instances seeded from `seed`; no wall-clock value reaches the output.
- The valid events depend only on `seed`, `conversations`, `start` and `days`: the format,
  the number of files and the bad-record rate change how they are written, not what they are.
  Bad records are *extra* records (copies with a new id, re-deliveries, orphans), so with
  `bad_rate=0` every record is valid and the pipeline should find exactly
  `GenerateResult.conversations` conversations, `open_conversations` of them still open.
- Streaming: events are generated conversation by conversation and written as they go.
  Memory holds one conversation, a small queue of delayed duplicates, one Parquet row group
  and two compact per-contact arrays (9 bytes a contact).

Output is roughly chronological (by conversation open time), not globally sorted.
"""

from closeconv.sample.generator import GenerateResult, generate_sample
from closeconv.sample.reference import write_reference
from closeconv.sample.sinks import output_paths
from closeconv.sample.workspace import (
    AGENTS,
    BAD_KINDS,
    CATEGORIES,
    CHANNELS,
    FORMATS,
    TEAMS,
    UNLISTED_CATEGORY,
)

__all__ = [
    "AGENTS",
    "BAD_KINDS",
    "CATEGORIES",
    "CHANNELS",
    "FORMATS",
    "GenerateResult",
    "TEAMS",
    "UNLISTED_CATEGORY",
    "generate_sample",
    "output_paths",
    "write_reference",
]
