"""Intake from the messaging platforms and other exports, framework-free.

- `signatures`: webhook signature checks (respond.io, Chatwoot);
- `respondio`, `chatwoot`: one delivery's raw body → contract events (plain functions);
- `delivery`: the outcome of mapping one delivery, and the dispatch by platform;
- `segments`: durable JSON-lines segment files (hidden while written, renamed when complete);
- `archive`: the raw-body archive records and `remap` over them;
- `settings`: where the signing keys and folders come from;
- `respondio_api`, `backfill`: the Developer API v2 client and the resumable backfill;
- `source_mapping`: other sources' CSV / JSON-lines exports → contract files by a declared mapping.

The HTTP server that uses these lives in the top-level `receiver` package.
"""
