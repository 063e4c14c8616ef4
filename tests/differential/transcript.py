"""What a run of a sequence gave back, and how two runs differ.

A ``Transcript`` holds, for each step of a sequence, the errno ``send()`` gave (0 when
it succeeded) and every message each socket received, as bytes, in order. ``compare``
explains every difference between two transcripts, message by message, with both
messages decoded and rendered by the codec.

Before comparing, only what no second run can reproduce is normalised:

* ``LIFETIME_CURRENT`` ``addtime`` and ``usetime``: wall-clock seconds;
* the 4 padding bytes after an IPv6 sockaddr in an ``X_MIGRATE`` broadcast's address
  extensions, which Linux never initialises (``tests/vectorlib.py``);
* template reqids that Linux generated itself (a template of level ``unique`` with
  reqid 0 or above ``IPSEC_MANUAL_REQID_MAX``): ``gen_reqid`` counts from a static
  variable shared by every namespace and every run since boot, so the numbers are
  renamed, in order of first appearance in the transcript, to 0x4000, 0x4001, ...
  A template in an SPD message Linux composes holds a reqid above 0x3fff only when
  Linux generated it, since larger requested reqids are replaced.

Everything else must match: SPIs, policy ids, ``sadb_msg_reserved`` (where Linux puts
a policy's reference count), sequence numbers, the order of messages.
"""

from __future__ import annotations

import difflib
import errno as errno_module
import json
import struct
from dataclasses import dataclass
from pathlib import Path

from pfmigrate.pfkey import DecodeError, decode
from pfmigrate.pfkey.render import render
from tests.differential.sequences import Sequence
from tests.vectorlib import zero_address_padding

FORMAT = 1
_EXT = struct.Struct("=HH")
_LIFETIME_CURRENT = 2
_X_POLICY = 18
_X_MIGRATE = 24
#: Message types whose answers Linux composes from a policy (``pfkey_xfrm_policy2msg``).
_SPD_TYPES = frozenset({13, 14, 15, 16, 18, 20, 22})
_MANUAL_REQID_MAX = 0x3FFF


@dataclass(frozen=True)
class StepResult:
    """One step: ``send()``'s errno (0: it succeeded) and what each socket received."""

    send_errno: int
    received: tuple[tuple[bytes, ...], ...]
    #: Seconds from the start of the run to this step's send (not compared).
    elapsed: float = 0.0


@dataclass(frozen=True)
class Transcript:
    seed: int
    steps: tuple[StepResult, ...]
    #: ``Sequence.digest()`` of the sequence that ran ("" if unknown).
    sequence_digest: str = ""
    #: Who answered: "Linux 6.1.0-...", or an engine's name.
    origin: str = ""

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": FORMAT,
                "seed": self.seed,
                "sequence_digest": self.sequence_digest,
                "origin": self.origin,
                "steps": [
                    {
                        "send_errno": step.send_errno,
                        "elapsed": step.elapsed,
                        "received": [[raw.hex() for raw in socket] for socket in step.received],
                    }
                    for step in self.steps
                ],
            },
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str) -> Transcript:
        data = json.loads(text)
        if data.get("format") != FORMAT:
            raise ValueError(f"transcript format {data.get('format')!r}, expected {FORMAT}")
        steps = tuple(
            StepResult(
                int(step["send_errno"]),
                tuple(tuple(bytes.fromhex(raw) for raw in socket) for socket in step["received"]),
                float(step.get("elapsed", 0.0)),
            )
            for step in data["steps"]
        )
        return cls(int(data["seed"]), steps, str(data.get("sequence_digest", "")), str(data.get("origin", "")))

    def save(self, path: Path) -> None:
        path.write_text(self.to_json())

    @classmethod
    def load(cls, path: Path) -> Transcript:
        return cls.from_json(path.read_text())


# --- normalisation ---------------------------------------------------------------------------


def _walk(raw: bytes) -> list[tuple[int, int, int]]:
    """(offset, size, type) of each extension, as far as the bytes are well formed.

    The walk goes by the bytes received, not by ``sadb_msg_len``: Linux sometimes gets
    that wrong (policies whose templates mix address families).
    """
    out: list[tuple[int, int, int]] = []
    end = len(raw)
    pos = 16
    while pos + 4 <= end:
        length, exttype = _EXT.unpack_from(raw, pos)
        if length == 0 or pos + length * 8 > end:
            break
        out.append((pos, length * 8, exttype))
        pos += length * 8
    return out


class _Normaliser:
    """Normalises the messages of one transcript; generated reqids are renamed across it."""

    def __init__(self) -> None:
        self.reqids: dict[int, int] = {}

    def message(self, raw: bytes) -> bytes:
        if len(raw) < 16:
            return raw
        out = bytearray(raw)
        mtype, errno = raw[1], raw[2]
        exts = _walk(raw)
        composed = any(t == _LIFETIME_CURRENT for _, _, t in exts)
        for pos, size, exttype in exts:
            if exttype == _LIFETIME_CURRENT and size >= 32:
                out[pos + 16 : pos + 32] = bytes(16)
            elif exttype == _X_POLICY and mtype in _SPD_TYPES and composed and not errno:
                self._rename_reqids(out, pos, size)
        if mtype == _X_MIGRATE:
            out = bytearray(zero_address_padding(bytes(out)))
        return bytes(out)

    def _rename_reqids(self, out: bytearray, pos: int, size: int) -> None:
        at, end = pos + 16, pos + size
        while at + 16 <= end:
            length = struct.unpack_from("=H", out, at)[0]
            if length < 16:
                return
            reqid = struct.unpack_from("=I", out, at + 8)[0]
            if reqid > _MANUAL_REQID_MAX:
                renamed = self.reqids.setdefault(reqid, _MANUAL_REQID_MAX + 1 + len(self.reqids))
                struct.pack_into("=I", out, at + 8, renamed)
            at += length


def normalise(transcript: Transcript) -> list[list[list[bytes]]]:
    """Every message of ``transcript`` with what cannot be reproduced made canonical."""
    norm = _Normaliser()
    return [[[norm.message(raw) for raw in socket] for socket in step.received] for step in transcript.steps]


# --- pfmigrate semantics -------------------------------------------------------------------------

_X_KMPRIVATE = 17
_GENERATION = struct.Struct("=HHIQ")  # an X_KMPRIVATE holding one u64: pfmigrate's broadcast number


def _wrong_length(raw: bytes) -> bool:
    return len(raw) >= 16 and struct.unpack_from("=H", raw, 4)[0] * 8 != len(raw)


def comparable_steps(sequence: Sequence, linux: Transcript) -> int:
    """How many steps come before the first MIGRATE, or the first step in which Linux
    sent a message with a wrong length: up to there pfmigrate's semantics are Linux's."""
    for i, (step, result) in enumerate(zip(sequence.steps, linux.steps, strict=True)):
        if step.data[1:2] == bytes([_X_MIGRATE]) or any(map(_wrong_length, sum(result.received, ()))):
            return i
    return len(sequence.steps)


def head(transcript: Transcript, steps: int) -> Transcript:
    return Transcript(transcript.seed, transcript.steps[:steps], transcript.sequence_digest, transcript.origin)


def _generation(raw: bytes) -> int | None:
    if len(raw) < 32:
        return None
    length, exttype, _, number = _GENERATION.unpack_from(raw, len(raw) - 16)
    return number if (length, exttype) == (2, _X_KMPRIVATE) else None


def without_generations(transcript: Transcript) -> Transcript:
    """``transcript`` with the generation extension taken off every message that ends with one."""

    def strip(raw: bytes) -> bytes:
        if _generation(raw) is None:
            return raw
        out = bytearray(raw[:-16])
        struct.pack_into("=H", out, 4, len(out) // 8)
        return bytes(out)

    steps = tuple(
        StepResult(step.send_errno, tuple(tuple(map(strip, socket)) for socket in step.received), step.elapsed)
        for step in transcript.steps
    )
    return Transcript(transcript.seed, steps, transcript.sequence_digest, transcript.origin)


def generation_gaps(transcript: Transcript) -> list[str]:
    """What is wrong with the broadcast numbers: no socket may see them go back, and
    together the sockets must have seen every number from 1 on."""
    problems: list[str] = []
    seen: set[int] = set()
    last: dict[int, int] = {}
    for i, step in enumerate(transcript.steps):
        for socket, messages in enumerate(step.received):
            for raw in messages:
                number = _generation(raw)
                if number is None:
                    continue
                if number < last.get(socket, 0):  # (equal: a promiscuous socket gets a second copy)
                    problems.append(f"step {i}: socket {socket} got broadcast {number} after {last[socket]}")
                last[socket] = number
                seen.add(number)
    if seen and seen != set(range(1, max(seen) + 1)):
        problems.append(f"broadcasts {sorted(set(range(1, max(seen) + 1)) - seen)} reached no socket")
    return problems


# --- explaining differences -------------------------------------------------------------------


def errno_name(value: int) -> str:
    if value == 0:
        return "0 (success)"
    return f"{value} ({errno_module.errorcode.get(value, '?')})"


def show(raw: bytes) -> str:
    """A message as the codec renders it, or its hex and why it does not decode.

    A message whose only fault is ``sadb_msg_len`` (Linux miscounts some policies) is
    rendered as if the length were right, under a line saying what the header claims.
    """
    try:
        return render(decode(raw))
    except DecodeError as exc:
        if len(raw) >= 16 and len(raw) % 8 == 0:
            fixed = raw[:4] + struct.pack("=H", len(raw) // 8) + raw[6:]
            try:
                text = render(decode(fixed))
            except DecodeError:
                pass
            else:
                claimed = struct.unpack_from("=H", raw, 4)[0] * 8
                return f"[sadb_msg_len says {claimed} bytes, the message has {len(raw)}]\n{text}"
        return f"undecodable ({exc}): {raw.hex()}"


def _indent(text: str, prefix: str = "    ") -> str:
    return "\n".join(prefix + line for line in text.splitlines())


def _message_diff(left: bytes, right: bytes, names: tuple[str, str]) -> str:
    a, b = show(left).splitlines(), show(right).splitlines()
    diff = difflib.unified_diff(a, b, names[0], names[1], n=1, lineterm="")
    lines = [line for line in diff if not line.startswith(("---", "+++"))]
    if not lines and left != right:
        lines = [f"(same rendering, different bytes)\n- {left.hex()}\n+ {right.hex()}"]
    return "\n".join(lines)


def compare(
    linux: Transcript,
    other: Transcript,
    *,
    sequence: Sequence | None = None,
    names: tuple[str, str] = ("Linux", "other"),
) -> list[str]:
    """Every difference between two runs of one sequence, each explained in a few lines.

    ``sequence``, if given, lets each explanation say what the step sent.
    """
    a_name, b_name = names
    problems: list[str] = []
    if linux.seed != other.seed:
        problems.append(f"seeds differ: {a_name} ran {linux.seed}, {b_name} ran {other.seed}")
    if linux.sequence_digest and other.sequence_digest and linux.sequence_digest != other.sequence_digest:
        problems.append(f"the transcripts are of different sequences ({a_name} {linux.sequence_digest[:12]}, "
                        f"{b_name} {other.sequence_digest[:12]})")  # fmt: skip
    if len(linux.steps) != len(other.steps):
        problems.append(f"{a_name} has {len(linux.steps)} steps, {b_name} {len(other.steps)}")
    left_all, right_all = normalise(linux), normalise(other)
    for i, (a, b) in enumerate(zip(linux.steps, other.steps, strict=False)):
        if sequence is not None and i < len(sequence.steps):
            step = sequence.steps[i]
            where = f"step {i} (socket {step.socket} sent {step.note})"
        else:
            where = f"step {i}"
        if a.send_errno != b.send_errno:
            problems.append(
                f"{where}: send() gave {errno_name(a.send_errno)} on {a_name}, {errno_name(b.send_errno)} on {b_name}"
            )
        if len(a.received) != len(b.received):
            problems.append(f"{where}: {a_name} has {len(a.received)} sockets, {b_name} {len(b.received)}")
        # The same difference on several sockets (a broadcast) is told once, naming them all.
        sockets_of: dict[str, list[int]] = {}
        for s, (left, right) in enumerate(zip(left_all[i], right_all[i], strict=False)):
            if left != right:
                for body in _explain_socket(left, right, names):
                    sockets_of.setdefault(body, []).append(s)
        for body, sockets in sockets_of.items():
            which = f"socket {sockets[0]}" if len(sockets) == 1 else f"sockets {', '.join(map(str, sockets))}"
            problems.append(f"{where}, {which}, {body}")
    return problems


def _explain_socket(left: list[bytes], right: list[bytes], names: tuple[str, str]) -> list[str]:
    a_name, b_name = names
    out: list[str] = []
    counts = f"{a_name} sent {len(left)} messages, {b_name} {len(right)}"
    matcher = difflib.SequenceMatcher(None, left, right, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            continue
        for k in range(max(i2 - i1, j2 - j1)):
            li, rj = i1 + k, j1 + k
            if li < i2 and rj < j2:
                out.append(
                    f"message {li + 1} of {a_name}'s {len(left)} / {rj + 1} of {b_name}'s {len(right)} "
                    f"differs:\n  {a_name}:\n{_indent(show(left[li]))}\n  {b_name}:\n{_indent(show(right[rj]))}\n"
                    f"  diff:\n{_indent(_message_diff(left[li], right[rj], names))}"
                )
            elif li < i2:
                out.append(f"only {a_name} sent message {li + 1} ({counts}):\n{_indent(show(left[li]))}")
            else:
                out.append(f"only {b_name} sent message {rj + 1} ({counts}):\n{_indent(show(right[rj]))}")
    return out
