"""What Linux made of the steps: accepted or refused, by message type and errno."""

from __future__ import annotations

import errno as errno_module
import struct
from collections import Counter
from collections.abc import Iterable

from pfmigrate.pfkey import MsgType
from tests.differential.sequences import Sequence, Step
from tests.differential.transcript import StepResult, Transcript

_MSG = struct.Struct("=BBBBHHII")


def _name(value: int) -> str:
    return errno_module.errorcode.get(value, str(value))


def outcome(step: Step, result: StepResult) -> str:
    """``ok``, ``send:E...`` (``send()`` failed) or ``E...`` (an error message came back).

    The error message is a 16-byte header with the request's type, seq and pid and
    ``sadb_msg_errno`` set, on the sender's socket. A promiscuous sender first gets its
    own request back, which is skipped.
    """
    if result.send_errno:
        return f"send:{_name(result.send_errno)}"
    if len(step.data) < 16:
        return "ok"
    _, mtype, _, _, _, _, seq, pid = _MSG.unpack_from(step.data)
    echo_skipped = False
    for raw in result.received[step.socket]:
        if raw == step.data and not echo_skipped:
            echo_skipped = True
            continue
        if len(raw) != 16:
            continue
        _, rtype, rerrno, _, _, _, rseq, rpid = _MSG.unpack_from(raw)
        if rerrno and (rtype, rseq, rpid) == (mtype, seq, pid):
            return _name(rerrno)
    return "ok"


def message_type(step: Step) -> str:
    return MsgType.of(step.data[1]).label if len(step.data) > 1 else "(no type byte)"


def histogram(runs: Iterable[tuple[Sequence, Transcript]]) -> Counter[tuple[str, str]]:
    """How often each message type (as sent) had each outcome."""
    counts: Counter[tuple[str, str]] = Counter()
    for sequence, transcript in runs:
        for step, result in zip(sequence.steps, transcript.steps, strict=True):
            counts[message_type(step), outcome(step, result)] += 1
    return counts


def format_histogram(counts: Counter[tuple[str, str]]) -> str:
    """A table: one line per message type, with its outcomes and their counts."""
    total = sum(counts.values())
    accepted = sum(n for (_, result), n in counts.items() if result == "ok")
    by_type: dict[str, Counter[str]] = {}
    for (mtype, result), n in counts.items():
        by_type.setdefault(mtype, Counter())[result] = n
    lines = [f"{total} steps: {accepted} accepted ({100 * accepted / max(total, 1):.1f} %), {total - accepted} refused"]
    for mtype, results in sorted(by_type.items(), key=lambda item: -sum(item[1].values())):
        parts = ", ".join(f"{result} {n}" for result, n in results.most_common())
        lines.append(f"  {mtype:<20} {sum(results.values()):>6}: {parts}")
    return "\n".join(lines)
