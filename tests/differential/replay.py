"""Show one seed's sequence and what Linux (and our engine) answered.

python -m tests.differential.replay SEED [--steps N]
    the sequence, each message rendered by the codec; where AF_KEY sockets can be
    opened (inside User-Mode Linux), also Linux's answers
python -m tests.differential.replay SEED --uml
    boots User-Mode Linux, runs the sequence there, shows the answers
python -m tests.differential.replay SEED --linux-transcript FILE
    the answers from a transcript saved earlier (--save FILE writes one)
--engine
    also runs pfmigrate.sadb.Engine and lists every difference from Linux
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from tests.differential.engine import engine_factory, run_on_engine
from tests.differential.linux import MODPROBE, module_loading_off, run_on_linux, unavailable, warm_up
from tests.differential.sequences import DEFAULT_STEPS, Sequence, generate
from tests.differential.transcript import Transcript, compare, errno_name, show

ROOT = Path(__file__).resolve().parents[2]


def _indent(text: str, prefix: str) -> str:
    return "\n".join(prefix + line for line in text.splitlines())


def render_sequence(sequence: Sequence, transcript: Transcript | None = None) -> str:
    """Every step: socket, note, the message; and with a transcript, what each socket got."""
    out = [f"seed {sequence.seed}: {len(sequence.steps)} steps, digest {sequence.digest()[:16]}"]
    if transcript is not None:
        out.append(f"answers from {transcript.origin or 'an unnamed run'}")
        if transcript.sequence_digest and transcript.sequence_digest != sequence.digest():
            out.append("WARNING: the transcript is of another sequence (the generator has changed since)")
    for i, step in enumerate(sequence.steps):
        out.append(f"\n--- step {i}: socket {step.socket} sends {step.note}")
        out.append(_indent(show(step.data), "    "))
        if transcript is None or i >= len(transcript.steps):
            continue
        result = transcript.steps[i]
        if result.send_errno:
            out.append(f"  send() failed: {errno_name(result.send_errno)}")
        for s, messages in enumerate(result.received):
            for k, raw in enumerate(messages):
                out.append(f"  socket {s} receives ({k + 1}/{len(messages)}):")
                out.append(_indent(show(raw), "    "))
        if not any(result.received) and not result.send_errno:
            out.append("  (nothing received)")
    return "\n".join(out)


def run_in_uml(seed: int, steps: int) -> Transcript:
    """Boot User-Mode Linux, run the sequence there, and bring back its transcript."""
    from testbed.uml import boot

    with tempfile.TemporaryDirectory(prefix="pfmigrate-replay-") as work:
        saved = Path(work) / "transcript.json"
        command = [sys.executable, "-m", "tests.differential.replay", str(seed), "--steps", str(steps)]
        command += ["--save", str(saved), "--quiet"]
        result = boot(command, workdir=Path(work) / "uml", cwd=ROOT)
        if not saved.exists():
            tail = "\n".join(result.console.splitlines()[-40:])
            raise SystemExit(f"the run inside User-Mode Linux gave no transcript (status {result.status}):\n{tail}")
        return Transcript.load(saved)


def run_here(sequence: Sequence) -> Transcript:
    """On this kernel; as root, with modules loaded first and on-demand loading off, as the tests run."""
    if os.geteuid() != 0 or not os.access(MODPROBE, os.W_OK):
        return run_on_linux(sequence)
    warm_up()
    with module_loading_off():
        return run_on_linux(sequence)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.differential.replay", description=__doc__.split("\n")[0])
    parser.add_argument("seed", type=int)
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    parser.add_argument("--linux-transcript", type=Path, help="Linux's answers, saved earlier with --save")
    parser.add_argument("--uml", action="store_true", help="boot User-Mode Linux and run the sequence there")
    parser.add_argument("--save", type=Path, help="write Linux's transcript (JSON) to this file")
    parser.add_argument("--engine", action="store_true", help="also run pfmigrate.sadb.Engine and compare")
    parser.add_argument("--quiet", action="store_true", help="print nothing (with --save)")
    args = parser.parse_args(argv)
    sequence = generate(args.seed, args.steps)
    linux: Transcript | None = None
    if args.linux_transcript is not None:
        linux = Transcript.load(args.linux_transcript)
    elif args.uml:
        linux = run_in_uml(args.seed, args.steps)
    elif unavailable() is None:
        linux = run_here(sequence)
    elif not args.quiet:
        print(f"({unavailable()}: showing the sequence only; --uml runs it in User-Mode Linux)\n")
    if args.save is not None and linux is not None:
        linux.save(args.save)
    if args.quiet:
        return 0
    print(render_sequence(sequence, linux))
    if args.engine:
        factory = engine_factory()
        times = [step.elapsed for step in linux.steps] if linux is not None else None
        ours = run_on_engine(sequence, factory, times=times, origin="pfmigrate.sadb.Engine")
        if linux is None:
            print("\n=== the engine's answers ===")
            print(render_sequence(sequence, ours))
        else:
            differences = compare(linux, ours, sequence=sequence, names=("Linux", "engine"))
            print(f"\n=== {len(differences)} differences between Linux and the engine ===")
            print("\n\n".join(differences))
            return 1 if differences else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
