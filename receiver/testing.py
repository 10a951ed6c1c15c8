"""A real receiver in a subprocess, for tests and the load benchmark (never a mock)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

CLOSECONV = Path(sys.executable).parent / "closeconv"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ReceiverProcess:
    """`closeconv intake serve` on 127.0.0.1 and a free port, with a clean environment."""

    def __init__(self, landing: Path, archive: Path, respondio_keys: list[str] | None = None,
                 chatwoot_secret: str | None = None, extra_args: list[str] | None = None,
                 log_path: Path | None = None, port: int | None = None) -> None:
        self.landing, self.archive = landing, archive
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLOSECONV_")}
        if respondio_keys:
            env["CLOSECONV_RESPONDIO_SIGNING_KEYS"] = ",".join(respondio_keys)
        if chatwoot_secret:
            env["CLOSECONV_CHATWOOT_WEBHOOK_SECRET"] = chatwoot_secret
        self.env = env
        self.args = [str(CLOSECONV), "intake", "serve", "--port", str(self.port), "--landing", str(landing),
                     "--archive", str(archive), "--log-level", "warning", *(extra_args or [])]
        self.log_path = log_path or landing.parent / f"receiver-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 30.0) -> "ReceiverProcess":
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.args, env=self.env, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"receiver exited with {self.proc.returncode}:\n{self.log()}")
            try:
                httpx.get(self.url + "/healthz", timeout=1.0)
                return self
            except httpx.HTTPError:
                time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"receiver did not come up in {timeout_s}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM: uvicorn finishes the requests in flight, the store closes its files."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout_s)
        finally:
            self._log.close()
        # uvicorn shuts down gracefully, then re-raises the signal it caught: -SIGTERM is a clean stop
        return 0 if rc == -signal.SIGTERM else rc

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
            self._log.close()

    def __enter__(self) -> "ReceiverProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.stop()


def respondio_conversation(contact_id: int, t0_s: int, user_id: int = 7, tag: str = "c",
                           frt_s: int = 90, close_after_s: int = 1200, ms_times: bool = True) -> list[dict]:
    """The respond.io payloads of one conversation: opened, received, sent by a user, closed."""
    def ts(t: int) -> int:
        return t * 1000 if ms_times else t

    def message(n: int, traffic: str, t: int) -> dict:
        return {"messageId": f"{tag}{contact_id}m{n}", "contactId": contact_id, "channelId": 301, "traffic": traffic,
                "timestamp": ts(t), "message": {"type": "text", "text": f"message {n}"}}

    contact = {"id": contact_id, "firstName": "C", "assignee": {"id": user_id}}
    eid = f"{tag}-{contact_id}-{t0_s}"
    return [
        {"event_type": "conversation.opened", "event_id": f"{eid}-o", "contact": contact,
         "conversation": {"source": "contact", "conversationOpenedAt": t0_s, "firstIncomingMessageChannelId": 301}},
        {"event_type": "message.received", "event_id": f"{eid}-r", "contact": contact,
         "message": message(1, "incoming", t0_s), "channel": {"id": 301}, "sender": {"source": "contact"}},
        {"event_type": "message.sent", "event_id": f"{eid}-s", "contact": contact,
         "message": message(2, "outgoing", t0_s + frt_s), "sender": {"source": "user", "userId": user_id},
         "user": {"id": user_id}},
        {"event_type": "conversation.closed", "event_id": f"{eid}-c", "contact": contact,
         "conversation": {"openedTime": t0_s, "closedTime": t0_s + close_after_s, "closedBySource": "user",
                          "closedBy": {"id": user_id}, "category": "General", "firstResponseTime": frt_s,
                          "resolutionTime": close_after_s, "incomingMessageCount": 1, "outgoingMessageCount": 1}},
    ]


class LoadResult:
    def __init__(self) -> None:
        self.acked: list[str] = []  # event ids answered 2xx
        self.latencies_s: list[float] = []  # per acknowledged request
        self.errors: dict[str, int] = {}
        self.started = time.perf_counter()
        self.seconds = 0.0

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


async def send_load(url: str, payloads: list[dict], key: str, concurrency: int = 32, deadline_s: float = 60.0,
                    on_ack=None) -> LoadResult:
    """POST signed respond.io payloads with bounded concurrency until done or the deadline.

    Keeps the list of acknowledged event ids; connection errors (a killed receiver) are counted."""
    import asyncio
    import json

    from closeconv.intake.signatures import respondio_signature

    bodies = [(p["event_id"], json.dumps(p).encode()) for p in payloads]
    signed = [(eid, body, respondio_signature(key, body)) for eid, body in bodies]
    result = LoadResult()
    queue: asyncio.Queue = asyncio.Queue()
    for item in signed:
        queue.put_nowait(item)
    deadline = time.perf_counter() + deadline_s
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async with httpx.AsyncClient(timeout=10.0, limits=limits) as client:
        async def worker() -> None:
            while time.perf_counter() < deadline:
                try:
                    eid, body, sig = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                t = time.perf_counter()
                try:
                    r = await client.post(url, content=body, headers={"x-webhook-signature": sig,
                                                                       "content-type": "application/json"})
                except httpx.HTTPError as exc:
                    result.error(type(exc).__name__)
                    continue
                if 200 <= r.status_code < 300:
                    result.acked.append(eid)
                    result.latencies_s.append(time.perf_counter() - t)
                    if on_ack is not None:
                        on_ack(result)
                else:
                    result.error(f"http_{r.status_code}")

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.seconds = time.perf_counter() - result.started
    return result
