"""Run the receiver with uvicorn (one process: the store's dedupe set and group commit are
in-process, so several workers would each need their own landing prefix and keys)."""

from __future__ import annotations

import logging

import uvicorn

from closeconv.intake.settings import IntakeSettings
from receiver.app import create_app


def serve(settings: IntakeSettings, host: str = "127.0.0.1", port: int = 8600, log_level: str = "info") -> None:
    logging.basicConfig(level=getattr(logging, log_level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = uvicorn.Config(
        create_app(settings), host=host, port=port, log_level=log_level,
        access_log=False,  # per-request lines cost throughput; /metrics counts instead
        proxy_headers=False,  # the client address is only logged for a refused signature
        server_header=False,
        timeout_graceful_shutdown=10,
        lifespan="on",
    )
    uvicorn.Server(config).run()
