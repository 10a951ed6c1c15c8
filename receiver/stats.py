"""Counters for GET /metrics, as Prometheus-style text (readable by a person too)."""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class IntakeStats:
    received: Counter = field(default_factory=Counter)  # platform
    stored: Counter = field(default_factory=Counter)  # platform: deliveries made durable
    events_written: int = 0
    duplicates: Counter = field(default_factory=Counter)  # platform
    rejected: Counter = field(default_factory=Counter)  # reason: stored malformed, or not stored (503, 413)
    ignored: Counter = field(default_factory=Counter)  # platform event type
    signature_failures: Counter = field(default_factory=Counter)  # (platform, reason)
    batches: int = 0
    # seconds per group commit (write + fsync of archive and landing) and deliveries per commit
    write_seconds: deque = field(default_factory=lambda: deque(maxlen=10_000))
    batch_sizes: deque = field(default_factory=lambda: deque(maxlen=10_000))

    def render(self) -> str:
        lines: list[str] = []

        def counter(name: str, help_text: str, values: dict, label: str | tuple[str, ...]) -> None:
            lines.append(f"# HELP closeconv_intake_{name} {help_text}")
            lines.append(f"# TYPE closeconv_intake_{name} counter")
            labels = (label,) if isinstance(label, str) else label
            for key, n in sorted(values.items()):
                parts = (key,) if isinstance(key, str) else key
                text = ",".join(f'{lab}="{val}"' for lab, val in zip(labels, parts))
                lines.append(f"closeconv_intake_{name}{{{text}}} {n}")

        counter("received_total", "Requests received per endpoint.", self.received, "platform")
        counter("stored_total", "Deliveries durably stored (archive and landing) before their 2xx.", self.stored, "platform")
        lines.append("# TYPE closeconv_intake_events_written_total counter")
        lines.append(f"closeconv_intake_events_written_total {self.events_written}")
        counter("duplicates_total", "Redeliveries acknowledged without storing again.", self.duplicates, "platform")
        counter("rejected_total", "Malformed bodies (stored with their reason) and requests not stored.", self.rejected, "reason")
        counter("ignored_total", "Event types closeconv does not use (acknowledged, archived).", self.ignored, ("platform", "event_type"))
        counter("signature_failures_total", "Requests refused with 401.", self.signature_failures, ("platform", "reason"))
        writes = list(self.write_seconds)
        lines.append("# TYPE closeconv_intake_group_commits_total counter")
        lines.append(f"closeconv_intake_group_commits_total {self.batches}")
        lines.append("# HELP closeconv_intake_write_latency_seconds Group commit time over the last 10,000 commits.")
        lines.append("# TYPE closeconv_intake_write_latency_seconds summary")
        for q in (0.5, 0.99):
            lines.append(f'closeconv_intake_write_latency_seconds{{quantile="{q}"}} {_quantile(writes, q):.6f}')
        lines.append(f"closeconv_intake_write_latency_seconds_count {len(writes)}")
        sizes = list(self.batch_sizes)
        lines.append("# TYPE closeconv_intake_batch_size summary")
        for q in (0.5, 0.99):
            lines.append(f'closeconv_intake_batch_size{{quantile="{q}"}} {_quantile(sizes, q):.0f}')
        return "\n".join(lines) + "\n"
