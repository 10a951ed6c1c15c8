"""The webhook receiver: a Starlette app served by uvicorn, on top of `closeconv.intake`.

- `store`: the durable store with group commit (archive + landing, fsync before any 2xx) and
  the receiver's own deduplication;
- `stats`: the counters behind GET /metrics;
- `app`: the routes;
- `server`: runs uvicorn (`closeconv intake serve`).
"""
