"""The routes: POST /webhooks/respondio, POST /webhooks/chatwoot, GET /healthz, GET /metrics.

A request is verified on its raw bytes before anything is parsed; one that fails gets 401,
is counted, and nothing of it is stored. A verified one is answered 200 only after it is
durable (see `receiver.store`), 503 when it could not be stored (the platform retries).
"""

from __future__ import annotations

import logging
import time
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from closeconv.intake.settings import IntakeSettings
from closeconv.intake.signatures import verify_chatwoot, verify_respondio
from receiver.stats import IntakeStats
from receiver.store import IntakeStore, StorageUnavailable

log = logging.getLogger("closeconv.receiver")

MAX_BODY_BYTES = 5 << 20  # respond.io and Chatwoot bodies are a few kB


def create_app(settings: IntakeSettings) -> Starlette:
    stats = IntakeStats()
    store = IntakeStore(settings, stats)

    @asynccontextmanager
    async def lifespan(app):
        await store.start()
        log.info("intake receiver listening; %s; landing %s; archive %s",
                 settings.describe(), settings.landing_dir, settings.archive_dir)
        try:
            yield
        finally:
            await store.stop()
            log.info("intake receiver stopped; every acknowledged delivery is in %s", settings.landing_dir)

    async def accept(platform: str, request: Request, verdict_of) -> Response:
        stats.received[platform] += 1
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            stats.rejected["too_large"] += 1
            return JSONResponse({"error": f"body over {MAX_BODY_BYTES} bytes"}, status_code=413)
        verdict = verdict_of(body, request.headers)
        if not verdict.ok:
            stats.signature_failures[(platform, verdict.reason)] += 1
            log.warning("refused a %s webhook from %s: %s", platform,
                        request.client.host if request.client else "?", verdict.reason)
            return JSONResponse({"error": "signature verification failed", "reason": verdict.reason}, status_code=401)
        delivery_id = request.headers.get("x-chatwoot-delivery") if platform == "chatwoot" else None
        try:
            status, delivery = await store.submit(platform, body, int(time.time() * 1000), delivery_id)
        except StorageUnavailable as exc:
            return JSONResponse({"error": "storage unavailable; retry later", "reason": str(exc)},
                                status_code=503, headers={"Retry-After": "5"})
        answer = {"status": status, "outcome": delivery.outcome}
        if delivery.reason:
            answer["reason"] = delivery.reason
        return JSONResponse(answer)

    async def respondio(request: Request) -> Response:
        if not settings.respondio_keys:
            return JSONResponse({"error": "respond.io intake is not configured (CLOSECONV_RESPONDIO_SIGNING_KEYS)"}, status_code=404)
        return await accept("respondio", request, lambda body, headers: verify_respondio(
            body, headers.get("x-webhook-signature"), list(settings.respondio_keys)))

    async def chatwoot(request: Request) -> Response:
        if not settings.chatwoot_secret:
            return JSONResponse({"error": "Chatwoot intake is not configured (CLOSECONV_CHATWOOT_WEBHOOK_SECRET)"}, status_code=404)
        return await accept("chatwoot", request, lambda body, headers: verify_chatwoot(
            body, headers.get("x-chatwoot-signature"), headers.get("x-chatwoot-timestamp"),
            settings.chatwoot_secret, time.time()))

    async def healthz(request: Request) -> Response:
        if store.failure:
            return JSONResponse({"status": "failing", "reason": store.failure}, status_code=503)
        return JSONResponse({"status": "ok", "recent_keys": len(store.recent)})

    async def metrics(request: Request) -> Response:
        return PlainTextResponse(stats.render())

    app = Starlette(
        routes=[
            Route("/webhooks/respondio", respondio, methods=["POST"]),
            Route("/webhooks/chatwoot", chatwoot, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.store = store
    return app
