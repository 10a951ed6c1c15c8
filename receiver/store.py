"""The durable store: nothing is acknowledged before it is on disk.

Every accepted delivery is appended to the raw-body archive and its events to a landing
segment; a request gets its 2xx only after both files were written, flushed and fsynced.
Group commit: requests queue their records, and one writer task takes everything queued,
writes it with one sync per file, then resolves all their futures.
While one commit runs, the next batch gathers, so throughput grows with concurrency while
each request still waits for its own fsync.

Both files are written, then synced in parallel (overlapping syncs cost about one). After a
crash either may hold a commit the other lacks, and `recover` reconciles both ways: the hidden
parts are finished; an archived delivery whose events are not in the landing folder is mapped
again and written; landed events missing from the archive are remembered, so that their retry
(never acknowledged, so the platform sends it again) is archived without landing twice.

Redeliveries are answered from a bounded set of recent dedupe keys (event_id, message id,
Chatwoot delivery id), rebuilt from the archive of the last day on start; the pipeline drops
exact duplicates again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from closeconv.intake.archive import ARCHIVE_SUFFIX, archive_record, event_line, read_archive, record_body
from closeconv.intake.delivery import IGNORED, MALFORMED, MAPPED, Delivery
from closeconv.intake.mapping import map_delivery
from closeconv.intake.segments import SegmentWriter, recover_parts
from closeconv.intake.settings import IntakeSettings
from receiver.stats import IntakeStats


def _wait_quietly(future) -> None:
    try:
        future.result()
    except OSError:
        pass

log = logging.getLogger("closeconv.receiver")

LANDING_PREFIX = "intake"
MAX_BATCH = 2_000  # deliveries per group commit
MAX_QUEUED = 20_000  # beyond this, answer 503 (the platform retries) rather than grow memory
RECENT_KEYS = 300_000  # dedupe keys remembered (about 50 MB)
REBUILD_WINDOW_S = 86_400


class StorageUnavailable(Exception):
    """The delivery could not be made durable; the platform must retry (503)."""


class RecentKeys:
    """A bounded set: the oldest keys are forgotten first."""

    def __init__(self, capacity: int = RECENT_KEYS) -> None:
        self.capacity = capacity
        self._keys: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, key: str) -> bool:
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, keys) -> None:
        for key in keys:
            self._keys[key] = None
            self._keys.move_to_end(key)
        while len(self._keys) > self.capacity:
            self._keys.popitem(last=False)


@dataclass
class _Pending:
    platform: str
    archive_line: bytes
    event_lines: list[bytes]
    delivery: Delivery
    future: asyncio.Future


class IntakeStore:
    def __init__(self, settings: IntakeSettings, stats: IntakeStats | None = None) -> None:
        self.settings = settings
        self.stats = stats or IntakeStats()
        big = 1 << 62  # rotation is decided here, for both files at once
        self.landing = SegmentWriter(settings.landing_dir, LANDING_PREFIX, ".jsonl", big, float("inf"))
        self.archive = SegmentWriter(settings.archive_dir, LANDING_PREFIX, ARCHIVE_SUFFIX, big, float("inf"))
        self.recent = RecentKeys()
        self.failure: str | None = None  # why the last commit failed; None when healthy
        self._pending: dict[str, asyncio.Future] = {}
        self._queue: asyncio.Queue[_Pending] | None = None
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="intake-io")
        self._sync_io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="intake-sync")
        # event ids found in the landing folder but not in the archive after a crash (the landing
        # sync finished, the archive sync did not): a retry of theirs is archived, not landed again
        self.unarchived: set[str] = set()
        self._writer_task: asyncio.Task | None = None
        self._rotator_task: asyncio.Task | None = None
        self._opened_at = time.monotonic()

    # ---------------------------------------------------------------- start and stop

    def recover(self) -> dict[str, int]:
        """Finish leftovers of a stopped or killed receiver and rebuild the recent keys."""
        counts = {"archive_parts": 0, "landing_parts": 0, "redone_events": 0, "recent_keys": 0}
        for folder in (self.settings.landing_dir, self.settings.archive_dir):
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                self.failure = f"cannot create {folder}: {exc}"
                log.error("intake storage unavailable: %s", self.failure)
                return counts
        try:
            archive_parts = recover_parts(self.settings.archive_dir, ARCHIVE_SUFFIX)
            landing_parts = recover_parts(self.settings.landing_dir, ".jsonl")
            counts["archive_parts"], counts["landing_parts"] = len(archive_parts), len(landing_parts)
            if landing_parts or archive_parts:
                self.unarchived = self._unarchived(archive_parts, landing_parts)
                counts["unarchived_events"] = len(self.unarchived)
            if archive_parts:
                counts["redone_events"] = self._redo(archive_parts, landing_parts)
        except OSError as exc:
            # Serve anyway: deliveries get 503 until the disk is back, and the leftovers stay
            # hidden (nothing is lost) until a start that can finish them.
            self.failure = f"cannot finish the files a previous run left: {exc}"
            log.error("intake storage unavailable: %s", self.failure)
        counts["recent_keys"] = self._rebuild_recent()
        return counts

    def _redo(self, archive_parts: list[Path], landing_parts: list[Path]) -> int:
        # Archive and landing rotate together: the events of an unfinished archive part are in
        # the unfinished landing part or, if the crash fell between the two renames, the last
        # finished landing file.
        written = self._landed_ids(landing_parts)
        missing: list[bytes] = []
        for _, _, record in read_archive(archive_parts):
            if record.get("outcome") != MAPPED or all(i in written for i in record.get("event_ids", [])):
                continue
            delivery = map_delivery(record["platform"], record_body(record), record["received_at_ms"], record.get("delivery_id"))
            missing.extend(event_line(e) for e in delivery.events if e["event_id"] not in written)
        if missing:
            self.landing.append(missing)
            self.landing.finish()
            log.warning("recovered %d archived events that had not reached the landing folder", len(missing))
        return len(missing)

    def _unarchived(self, archive_parts: list[Path], landing_parts: list[Path]) -> set[str]:
        """Event ids of the crash's last files that are in the landing folder but not archived."""
        last_archive = sorted(p for p in self.settings.archive_dir.glob(f"*{ARCHIVE_SUFFIX}") if p not in archive_parts)[-1:]
        archived = {i for _, _, r in read_archive([*archive_parts, *last_archive]) for i in r.get("event_ids", [])}
        return self._landed_ids(landing_parts) - archived

    def _landed_ids(self, landing_parts: list[Path]) -> set[str]:
        finished = sorted(p for p in self.settings.landing_dir.glob(f"{LANDING_PREFIX}-*.jsonl") if p not in landing_parts)
        ids: set[str] = set()
        for path in [*landing_parts, *finished[-1:]]:
            with open(path, "rb") as fh:
                for line in fh:
                    try:
                        ids.add(json.loads(line)["event_id"])
                    except (ValueError, KeyError, TypeError):
                        continue
        return ids

    def _rebuild_recent(self) -> int:
        cutoff = time.time() - REBUILD_WINDOW_S
        files = sorted(p for p in self.settings.archive_dir.glob(f"*{ARCHIVE_SUFFIX}") if p.stat().st_mtime >= cutoff)
        # newest files first, only as many as the set holds; then added oldest first, as they came
        per_file: list[list[str]] = []
        total = 0
        for path in reversed(files):
            keys = [k for _, _, record in read_archive([path]) for k in record.get("dedupe_keys") or []]
            per_file.append(keys)
            total += len(keys)
            if total >= self.recent.capacity:
                break
        for keys in reversed(per_file):
            self.recent.add(keys)
        return len(self.recent)

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        loop = asyncio.get_running_loop()
        counts = await loop.run_in_executor(self._io, self.recover)
        log.info("intake store ready: %s", ", ".join(f"{k} {v}" for k, v in counts.items()))
        self._writer_task = asyncio.create_task(self._writer(), name="intake-writer")
        self._rotator_task = asyncio.create_task(self._rotator(), name="intake-rotator")

    async def stop(self) -> None:
        """Commit what is queued, then finish both segments so nothing acknowledged stays hidden."""
        if self._queue is not None:
            await self._queue.join()
        for task in (self._rotator_task, self._writer_task):
            if task is not None:
                task.cancel()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._io, self._finish_both)
        self._io.shutdown(wait=True)
        self._sync_io.shutdown(wait=True)

    # ---------------------------------------------------------------- accepting deliveries

    async def submit(self, platform: str, body: bytes, received_at_ms: int, delivery_id: str | None) -> tuple[str, Delivery]:
        """Store one verified delivery durably. Returns ("stored" | "duplicate", the delivery);
        raises StorageUnavailable when it could not be made durable."""
        delivery = map_delivery(platform, body, received_at_ms, delivery_id)
        keys = delivery.dedupe_keys
        if any(k in self.recent for k in keys):
            self.stats.duplicates[platform] += 1
            return "duplicate", delivery
        in_flight = next((self._pending[k] for k in keys if k in self._pending), None)
        if in_flight is not None:
            await asyncio.shield(in_flight)  # the first delivery's commit decides for both
            self.stats.duplicates[platform] += 1
            return "duplicate", delivery
        assert self._queue is not None, "store not started"
        if self._queue.qsize() >= MAX_QUEUED:
            self.stats.rejected["overloaded"] += 1
            raise StorageUnavailable("too many deliveries waiting for the disk")
        future = asyncio.get_running_loop().create_future()
        for k in keys:
            self._pending[k] = future
        if self.unarchived and any(e["event_id"] in self.unarchived for e in delivery.events):
            # its events reached the landing folder before a crash; only the archive lacks it
            self.unarchived.difference_update(e["event_id"] for e in delivery.events)
            lines = []
        else:
            lines = [event_line(e) for e in delivery.events]
        self._queue.put_nowait(_Pending(platform, archive_record(platform, body, received_at_ms, delivery_id, delivery),
                                        lines, delivery, future))
        try:
            await asyncio.shield(future)
        finally:
            for k in keys:
                if self._pending.get(k) is future:
                    del self._pending[k]
        if delivery.outcome == IGNORED:
            self.stats.ignored[(platform, delivery.event_type or "?")] += 1
        elif delivery.outcome == MALFORMED:
            # the reason without its details (a JSON error's position), so the labels stay few
            self.stats.rejected[f"malformed: {(delivery.reason or '').split(' (')[0]}"] += 1
        return "stored", delivery

    # ---------------------------------------------------------------- the writer

    async def _writer(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            while len(batch) < MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            started = time.perf_counter()
            try:
                await loop.run_in_executor(self._io, self._commit, batch)
            except Exception as exc:  # noqa: BLE001 - any failure means "not durable": 503, retry
                self.failure = f"{type(exc).__name__}: {exc}"
                log.error("intake storage unavailable, answering 503 to %d deliveries: %s", len(batch), self.failure)
                self.stats.rejected["storage_unavailable"] += len(batch)
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(StorageUnavailable(self.failure))
            else:
                if self.failure is not None:
                    log.warning("intake storage writable again")
                self.failure = None
                self.stats.batches += 1
                self.stats.write_seconds.append(time.perf_counter() - started)
                self.stats.batch_sizes.append(len(batch))
                for item in batch:
                    self.recent.add(item.delivery.dedupe_keys)
                    self.stats.stored[item.platform] += 1
                    self.stats.events_written += len(item.event_lines)
                    if not item.future.done():
                        item.future.set_result(None)
            finally:
                for _ in batch:
                    self._queue.task_done()

    def _commit(self, batch: list[_Pending]) -> None:
        """On the I/O thread: write both files, then sync them in parallel (one sync costs about
        what two cost when they overlap). A failure on either side takes the other side's
        write back, so a retry is neither a duplicate nor a conflict."""
        self.archive.write([item.archive_line for item in batch])
        try:
            self.landing.write([line for item in batch for line in item.event_lines])
        except OSError:
            self._undo(self.archive)
            raise
        archive_sync = self._sync_io.submit(self.archive.sync)
        try:
            self.landing.sync()
        except OSError:
            _wait_quietly(archive_sync)
            self._undo(self.archive)
            raise
        try:
            archive_sync.result()
        except OSError:
            self._undo(self.landing)
            raise
        self._rotate_if_due()

    @staticmethod
    def _undo(writer: SegmentWriter) -> None:
        try:
            writer.undo_last()
        except OSError:
            pass  # recovery reconciles the two files on the next start

    def _rotate_if_due(self) -> None:
        part = self.landing.current_part or self.archive.current_part
        if part is None:
            self._opened_at = time.monotonic()
            return
        too_old = time.monotonic() - self._opened_at >= self.settings.rotate_seconds
        too_big = self.landing.committed_bytes >= self.settings.rotate_bytes or self.archive.committed_bytes >= 4 * self.settings.rotate_bytes
        if too_old or too_big:
            self._finish_both()

    def _finish_both(self) -> None:
        # landing first: a crash between the two leaves an archive part, which `recover` checks
        self.landing.finish()
        self.archive.finish()
        self._opened_at = time.monotonic()

    async def _rotator(self) -> None:
        """Rotate on time even when no traffic comes, so the pipeline sees the last events."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(min(1.0, self.settings.rotate_seconds))
            try:
                await loop.run_in_executor(self._io, self._rotate_if_due)
            except OSError as exc:
                log.error("intake rotation failed (retried next second): %s", exc)
