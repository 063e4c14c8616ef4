"""The agents' counters, in the Prometheus text format, as keyd writes its own
(``pfmigrate mn|ha --metrics FILE``, for a node exporter's textfile collector).

Everything but the bindings gauge is counted from the agent's notes, the same events
the log shows, so the figures and the log cannot disagree. Sans-IO but for ``write``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from pfmigrate._files import replace_atomically

#: Upper bounds of the MIGRATE latency buckets, in seconds: an in-process move takes
#: about a millisecond, a move that is read back after lost answers up to a minute.
BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: The notes of settling an outcome (``agent.Settler``): what went wrong and was repaired.
SETTLING: Final = frozenset(
    {"divergence", "outcome-unknown", "refused", "converged", "read-back-again", "read-back-failed", "migrate-failed"}
)
_PREFIX: Final = "pfmigrate_mobility_"


class AgentMetrics:
    """One agent's counters. ``note`` takes each note as the shell logs it, with the
    shell's clock; ``bindings`` is set by the shell before ``render``."""

    def __init__(self, role: str) -> None:
        self.role = role
        self.bindings = 0
        self.bu_sent = 0
        self.bu_received = 0
        self.ba_sent: Counter[int] = Counter()  # by status
        self.ba_received: Counter[int] = Counter()  # by status
        self.ba_send_failed = 0
        self.refusals: Counter[int] = Counter()  # Binding Acknowledgements with status >= 128, by status
        self.settling: Counter[str] = Counter()  # by note
        self.migrates: Counter[str] = Counter()  # by outcome: done, failed
        self.latency = [0] * len(BUCKETS)  # not cumulative; made so in ``render``
        self.latency_sum = 0.0
        self._started: dict[str, float] = {}  # per home address: when its migrate was asked for

    def note(self, event: str, fields: Mapping[str, Any], now: float) -> None:
        hoa = str(fields.get("hoa", ""))  # (the mobile node's notes have one home address, and no field)
        status = fields.get("status")
        if event == "bu-sent":
            self.bu_sent += 1
        elif event == "bu-received":
            self.bu_received += 1
        elif event == "ba-sent" and isinstance(status, int):
            self.ba_sent[status] += 1
            self._refusal(status)
        elif event == "ba-received" and isinstance(status, int):
            self.ba_received[status] += 1
            self._refusal(status)
        elif event == "ba-send-failed":
            self.ba_send_failed += 1
        elif event == "migrate":
            self._started[hoa] = now
        if event in ("migrate-done", "migrate-failed"):
            started = self._started.pop(hoa, None)
            if started is not None:
                self._observe(event.removeprefix("migrate-"), max(0.0, now - started))
        if event in SETTLING:
            self.settling[event] += 1

    def _refusal(self, status: int) -> None:
        if status >= 128:  # RFC 6275 6.1.8: 128 and above are rejections
            self.refusals[status] += 1

    def _observe(self, outcome: str, seconds: float) -> None:
        self.migrates[outcome] += 1
        self.latency_sum += seconds
        for i, bound in enumerate(BUCKETS):
            if seconds <= bound:
                self.latency[i] += 1
                break

    def render(self) -> str:
        role = f'role="{self.role}"'
        out: list[str] = []

        def family(name: str, kind: str, text: str, samples: list[tuple[str, float]]) -> None:
            out.extend((f"# HELP {_PREFIX}{name} {text}", f"# TYPE {_PREFIX}{name} {kind}"))
            out.extend(f"{_PREFIX}{suffix} {_number(value)}" for suffix, value in samples)

        def by(name: str, label: str, counts: Mapping[Any, int]) -> list[tuple[str, float]]:
            return [(f'{name}{{{role},{label}="{key}"}}', n) for key, n in sorted(counts.items())]

        family("bindings", "gauge", "Bindings held (home agent: binding cache; mobile node: 1 when registered).",
               [(f"bindings{{{role}}}", self.bindings)])  # fmt: skip
        family("binding_updates_sent_total", "counter", "Binding Updates sent.",
               [(f"binding_updates_sent_total{{{role}}}", self.bu_sent)])  # fmt: skip
        family("binding_updates_received_total", "counter", "Binding Updates received.",
               [(f"binding_updates_received_total{{{role}}}", self.bu_received)])  # fmt: skip
        family("binding_acks_sent_total", "counter", "Binding Acknowledgements sent, by status.",
               by("binding_acks_sent_total", "status", self.ba_sent))  # fmt: skip
        family("binding_acks_received_total", "counter", "Binding Acknowledgements received, by status.",
               by("binding_acks_received_total", "status", self.ba_received))  # fmt: skip
        family("binding_ack_send_failures_total", "counter", "Binding Acknowledgements the socket refused to send.",
               [(f"binding_ack_send_failures_total{{{role}}}", self.ba_send_failed)])  # fmt: skip
        family("refusals_total", "counter", "Binding Acknowledgements with a rejection (status >= 128), by status.",
               by("refusals_total", "status", self.refusals))  # fmt: skip
        family("settling_total", "counter", "Key-engine outcomes settled by reading back, by note.",
               by("settling_total", "note", self.settling))  # fmt: skip
        family("migrates_total", "counter", "IPsec moves finished, by outcome.",
               by("migrates_total", "outcome", self.migrates))  # fmt: skip
        buckets: list[tuple[str, float]] = []
        total = 0
        for bound, n in zip(BUCKETS, self.latency, strict=True):
            total += n
            buckets.append((f'migrate_seconds_bucket{{{role},le="{_number(bound)}"}}', total))
        count = sum(self.migrates.values())
        buckets += [
            (f'migrate_seconds_bucket{{{role},le="+Inf"}}', count),
            (f"migrate_seconds_sum{{{role}}}", self.latency_sum),
            (f"migrate_seconds_count{{{role}}}", count),
        ]
        family("migrate_seconds", "histogram", "Time from asking the key engine for a move to its outcome.", buckets)
        return "\n".join(out) + "\n"


def _number(value: float) -> str:
    return str(value) if isinstance(value, int) or not value.is_integer() else str(int(value))


class MetricsFile:
    """Writes at most once every ``interval`` seconds, and whenever ``flush`` is called."""

    def __init__(self, path: Path, interval: float = 1.0) -> None:
        self.path = path
        self.interval = interval
        self.written_at: float | None = None

    def due(self, now: float) -> bool:
        return self.written_at is None or now - self.written_at >= self.interval

    def write(self, text: str, now: float) -> None:
        replace_atomically(self.path, text)
        self.written_at = now
