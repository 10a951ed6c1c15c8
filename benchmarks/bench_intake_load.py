"""Load benchmark: signed respond.io webhooks against the real receiver on 127.0.0.1.

    uv run python benchmarks/bench_intake_load.py                       # 20,000 webhooks
    uv run python benchmarks/bench_intake_load.py -n 50000 --concurrency 64 --clients 2

Starts `closeconv intake serve` on a free port (a subprocess, temp folders), sends N signed
payloads (conversations of open / message in / message out / close) with bounded concurrency
from `--clients` load processes (httpx AsyncClient), bounded in count and time, and prints
webhooks/s and the p50/p99 acknowledgement latency seen by the clients, with the receiver's own
group-commit figures. Then it stops the receiver, runs `closeconv run` on the landing folder and
checks that every acknowledged event is in `events`. Target: >= 2,000 webhooks/s, p99 < 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import httpx

from closeconv.intake.signatures import respondio_signature
from receiver.testing import CLOSECONV, ReceiverProcess, respondio_conversation, send_load

KEY = "bench-signing-key"
T0 = 1_772_442_000


async def _raw_load(host: str, port: int, path: str, payloads: list[dict], concurrency: int, deadline_s: float):
    """Keep-alive HTTP/1.1 POSTs over asyncio streams. Why not httpx here: on this machine httpx
    itself tops out near 200 requests/s per core, so it would measure the client, not the receiver
    (the tests use httpx; `--httpx` uses it here too)."""
    import json

    items = []
    for p in payloads:
        body = json.dumps(p).encode()
        head = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
                f"X-Webhook-Signature: {respondio_signature(KEY, body)}\r\nContent-Length: {len(body)}\r\n\r\n")
        items.append((p["event_id"], head.encode() + body))
    acked, latencies, errors = [], [], {}
    started = time.perf_counter()
    deadline = started + deadline_s
    it = iter(items)

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            for eid, request in it:
                if time.perf_counter() > deadline:
                    return
                t = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
                await reader.readexactly(length)
                if 200 <= status < 300:
                    acked.append(eid)
                    latencies.append(time.perf_counter() - t)
                else:
                    errors[f"http_{status}"] = errors.get(f"http_{status}", 0) + 1
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(concurrency)))
    return acked, latencies, errors, time.perf_counter() - started


def _client(args) -> tuple[list[str], list[float], dict, float]:
    url, payloads, concurrency, deadline_s, use_httpx = args
    if use_httpx:
        r = asyncio.run(send_load(url, payloads, KEY, concurrency=concurrency, deadline_s=deadline_s))
        return r.acked, r.latencies_s, r.errors, r.seconds
    try:
        import uvloop
        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    address = httpx.URL(url)
    return runner(_raw_load(address.host, address.port, address.path, payloads, concurrency, deadline_s))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc): a figure the other load on the machine
    does not inflate, unlike wall-clock throughput."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", "--webhooks", type=int, default=20_000)
    ap.add_argument("--concurrency", type=int, default=32, help="requests in flight per load process")
    ap.add_argument("--clients", type=int, default=1, help="load processes")
    ap.add_argument("--max-seconds", type=float, default=120.0)
    ap.add_argument("--keep", action="store_true", help="keep the temp folder")
    ap.add_argument("--httpx", action="store_true", help="load with httpx.AsyncClient instead of raw keep-alive streams")
    args = ap.parse_args()
    if args.webhooks > 200_000:
        ap.error("at most 200,000 webhooks (a bounded load)")

    work = Path(tempfile.mkdtemp(prefix="closeconv-intake-bench-"))
    landing, archive = work / "landing", work / "archive"
    landing.mkdir()
    payloads = [p for i in range((args.webhooks + 3) // 4)
                for p in respondio_conversation(10_000 + i, T0 + 7 * i, user_id=1 + i % 20, tag="b")][: args.webhooks]
    shares = [payloads[i :: args.clients] for i in range(args.clients)]
    print(f"load average before: {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} CPUs", flush=True)

    with ReceiverProcess(landing, archive, [KEY], log_path=work / "receiver.log") as receiver:
        url = receiver.url + "/webhooks/respondio"
        cpu_before = cpu_seconds(receiver.proc.pid)
        started = time.perf_counter()
        jobs = [(url, share, args.concurrency, args.max_seconds, args.httpx) for share in shares]
        if args.clients == 1:
            results = [_client(jobs[0])]
        else:
            with mp.get_context("spawn").Pool(args.clients) as pool:
                results = pool.map(_client, jobs)
        wall = time.perf_counter() - started
        cpu_used = cpu_seconds(receiver.proc.pid) - cpu_before
        server_metrics = httpx.get(receiver.url + "/metrics").text
        load_after = os.getloadavg()[0]
    acked = [eid for r in results for eid in r[0]]
    latencies = [x for r in results for x in r[1]]
    errors: dict[str, int] = {}
    for r in results:
        for k, v in r[2].items():
            errors[k] = errors.get(k, 0) + v

    def server(name: str) -> str:
        m = re.search(rf"^{re.escape(name)} (\S+)$", server_metrics, re.M)
        return m.group(1) if m else "?"

    # the clients time their own sending (process start-up and signing excluded)
    wall = max(r[3] for r in results)
    rate = len(acked) / wall
    p50, p99 = quantile(latencies, 0.5) * 1000, quantile(latencies, 0.99) * 1000
    print(f"webhooks acknowledged  {len(acked):>10,} of {len(payloads):,} in {wall:.1f}s "
          f"({args.clients} load process(es) x {args.concurrency} in flight)")
    print(f"throughput             {rate:>10,.0f} webhooks/s   (target >= 2,000)")
    print(f"ack latency p50 / p99  {p50:>7.1f} / {p99:.1f} ms   (target p99 < 50 ms)")
    print(f"errors                 {errors or 'none'}")
    commit_p50 = float(server('closeconv_intake_write_latency_seconds{quantile="0.5"}')) * 1000
    commit_p99 = float(server('closeconv_intake_write_latency_seconds{quantile="0.99"}')) * 1000
    batch_p50 = server('closeconv_intake_batch_size{quantile="0.5"}')
    batch_p99 = server('closeconv_intake_batch_size{quantile="0.99"}')
    print(f"receiver group commits {server('closeconv_intake_group_commits_total')}, commit p50 {commit_p50:.2f} ms, "
          f"p99 {commit_p99:.2f} ms, deliveries per commit p50 {batch_p50} / p99 {batch_p99}")
    per = cpu_used / max(1, len(acked)) * 1e6
    print(f"receiver CPU           {cpu_used:.1f} s = {per:.0f} µs per webhook "
          f"(≈ {1e6 / per:,.0f} webhooks/s per free core)")
    print(f"load average after:    {load_after:.2f} (1 min)")

    warehouse = work / "warehouse.duckdb"
    (work / "workflows").mkdir()
    t = time.perf_counter()
    proc = subprocess.run([str(CLOSECONV), "run", "--quiet", "--landing", str(landing), "--warehouse", str(warehouse),
                           "--workflows", str(work / "workflows")],
                          capture_output=True, text=True, env={k: v for k, v in os.environ.items() if not k.startswith(("CLOSECONV_", "DAGSTER_HOME"))})
    if proc.returncode != 0:
        print(proc.stdout, proc.stderr, file=sys.stderr)
        return 1
    con = duckdb.connect(str(warehouse), read_only=True)
    con.register("_acked", __import__("polars").DataFrame({"event_id": acked}))
    missing = con.sql("SELECT count(*) FROM _acked ANTI JOIN events USING (event_id)").fetchall()[0][0]
    loaded = con.sql("SELECT count(*) FROM events").fetchall()[0][0]
    con.close()
    print(f"closeconv run          {time.perf_counter() - t:.1f}s: {loaded:,} events loaded; "
          f"acknowledged but missing: {missing}")
    if not args.keep:
        import shutil
        shutil.rmtree(work)
    else:
        print(f"kept {work}")
    return 0 if missing == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
