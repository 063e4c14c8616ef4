"""Differential tests: random PF_KEY sequences on Linux ``af_key``, and the same on our engine.

* Linux against itself: the same seeded sequences, run twice, must give transcripts that
  ``compare`` finds identical. This shows the runs are deterministic and that the
  comparison normalises exactly what cannot be reproduced.
* The engine against Linux: with Linux semantics every sequence must give the engine the
  same transcript as Linux, message by message, final dumps included; with pfmigrate's
  semantics, every sequence the documented improvements do not touch.

``PFMIGRATE_DIFF_SEED`` sets the first seed (default 0), ``PFMIGRATE_DIFF_COUNT`` how
many sequences the engine test runs (default 500), and ``PFMIGRATE_DIFF_REPORT`` names a
file for a summary (timings, and what Linux accepted and refused). A failing seed is
shown with ``python -m tests.differential.replay SEED --uml``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.differential.engine import EngineFailure, engine_factory, run_on_engine
from tests.differential.linux import prepared, run_sequences
from tests.differential.sequences import DEFAULT_STEPS, Sequence, generate
from tests.differential.stats import format_histogram, histogram
from tests.differential.transcript import (
    Transcript,
    comparable_steps,
    compare,
    generation_gaps,
    head,
    without_generations,
)

pytestmark = pytest.mark.kernel

SEED_BASE = int(os.environ.get("PFMIGRATE_DIFF_SEED", "0"))
COUNT = int(os.environ.get("PFMIGRATE_DIFF_COUNT", "500"))
SELF_CHECK = 100
QUICK = 0.5  # seconds: a run this short stays within a new policy's first second
SHOWN_SEEDS = 3
SHOWN_DIFFERENCES = 6


def _report(text: str) -> None:
    """Print ``text`` and append it to ``PFMIGRATE_DIFF_REPORT`` if set (the guest shares the host's files)."""
    print(text)
    path = os.environ.get("PFMIGRATE_DIFF_REPORT")
    if path:
        with Path(path).open("a") as out:
            out.write(text + "\n")


def _explain(failures: list[tuple[int, list[str]]], total: int, names: str) -> str:
    seeds = ", ".join(str(seed) for seed, _ in failures[:20])
    lines = [f"{len(failures)} of {total} sequences differ between {names} (seeds {seeds}...)"]
    for seed, differences in failures[:SHOWN_SEEDS]:
        lines.append(
            f"\n=== seed {seed}: {len(differences)} differences "
            f"(python -m tests.differential.replay {seed} --steps {DEFAULT_STEPS} --uml) ==="
        )
        lines += differences[:SHOWN_DIFFERENCES]
    return "\n".join(lines)


@pytest.fixture(scope="module")
def linux() -> Iterator[None]:
    """Modules loaded once, on-demand loading off: runs of milliseconds (see ``linux.prepared``)."""
    with prepared():
        yield


def _sequences(count: int) -> list[Sequence]:
    return [generate(seed, DEFAULT_STEPS) for seed in range(SEED_BASE, SEED_BASE + count)]


def test_linux_agrees_with_itself(linux: None) -> None:
    sequences = _sequences(SELF_CHECK)
    started = time.monotonic()
    first = run_sequences(sequences)
    middle = time.monotonic()
    second = run_sequences(sequences)
    finished = time.monotonic()
    failures = [
        (sequence.seed, found)
        for sequence, a, b in zip(sequences, first, second, strict=True)
        if (found := _differences_when_quick(sequence, a, b))
    ]
    longest = max(step.elapsed for t in first + second for step in t.steps)
    _report(
        f"Linux against itself: {SELF_CHECK} sequences of {DEFAULT_STEPS} steps from seed {SEED_BASE}, "
        f"{middle - started:.2f} s and {finished - middle:.2f} s; the longest run took {longest:.3f} s\n"
        + format_histogram(histogram(zip(sequences, first, strict=True)))
    )
    assert not failures, _explain(failures, SELF_CHECK, "two runs on Linux")


def _differences_when_quick(sequence: Sequence, a: Transcript, b: Transcript) -> list[str]:
    """How two runs of ``sequence`` differ, run again (up to three times) while one of
    them was slow: Linux holds an extra reference to a policy for its first second (its
    timer), which dumps show, so a run that the host paused for a second differs."""
    for _ in range(3):
        found = compare(a, b, sequence=sequence, names=("first run", "second run"))
        took = f"(the runs took {a.steps[-1].elapsed:.3f} s and {b.steps[-1].elapsed:.3f} s)"
        if not found or max(a.steps[-1].elapsed, b.steps[-1].elapsed) < QUICK:
            break
        [a, b] = run_sequences([sequence, sequence])
    return [took, *found] if found else []


def test_nothing_arrives_after_the_drain(linux: None) -> None:
    """``send()`` has delivered everything when it returns: waiting afterwards brings nothing."""
    run_sequences(_sequences(10), settle=0.01)  # raises LateDelivery otherwise


@pytest.fixture(scope="module")
def on_linux(linux: None) -> tuple[list[Sequence], list[Transcript]]:
    """The sequences and what Linux answered, once for the tests that compare with it."""
    sequences = _sequences(COUNT)
    started = time.monotonic()
    transcripts = run_sequences(sequences)
    took = time.monotonic() - started
    _report(f"Linux ran {COUNT} sequences of {DEFAULT_STEPS} steps from seed {SEED_BASE} in {took:.2f} s")
    return sequences, transcripts


def _run_engine(sequence: Sequence, on_kernel: Transcript, semantics: str) -> tuple[Transcript | None, list[str]]:
    times = [step.elapsed for step in on_kernel.steps]
    try:
        ours = run_on_engine(sequence, engine_factory(semantics), times=times, origin=f"Engine({semantics})")
    except EngineFailure as exc:
        return None, [str(exc)]
    return ours, []


def test_engine_matches_linux(on_linux: tuple[list[Sequence], list[Transcript]]) -> None:
    """With Linux semantics every answer, broadcast and final dump is Linux's, byte for byte."""
    sequences, transcripts = on_linux
    failures: list[tuple[int, list[str]]] = []
    started = time.monotonic()
    for sequence, on_kernel in zip(sequences, transcripts, strict=True):
        ours, errors = _run_engine(sequence, on_kernel, "linux")
        if ours is not None:
            errors = compare(on_kernel, ours, sequence=sequence, names=("Linux", "engine"))
        if errors:
            failures.append((sequence.seed, errors))
    _report(
        f"engine (Linux semantics) against Linux: {COUNT} sequences, {time.monotonic() - started:.2f} s on the "
        f"engine with comparing; {len(failures)} differ"
    )
    assert not failures, _explain(failures, COUNT, "Linux and the engine")


def test_pfmigrate_semantics_differ_only_where_documented(on_linux: tuple[list[Sequence], list[Transcript]]) -> None:
    """The default semantics change MIGRATE, number broadcasts and send policies with a
    correct length (docs/differences-from-linux.md). Up to the first MIGRATE of a
    sequence, and the first policy Linux sends with a wrong length, every answer is
    Linux's once the generation numbers are taken off; and the numbers have no gap."""
    sequences, transcripts = on_linux
    failures: list[tuple[int, list[str]]] = []
    steps = 0
    for sequence, on_kernel in zip(sequences, transcripts, strict=True):
        ours, errors = _run_engine(sequence, on_kernel, "pfmigrate")
        if ours is not None:
            keep = comparable_steps(sequence, on_kernel)
            steps += keep
            plain = without_generations(ours)
            errors = generation_gaps(ours) or compare(
                head(on_kernel, keep), head(plain, keep), sequence=sequence, names=("Linux", "engine")
            )
        if errors:
            failures.append((sequence.seed, errors))
    total = COUNT * len(sequences[0].steps)
    _report(f"engine (pfmigrate semantics) against Linux: {steps} of {total} steps compared; {len(failures)} differ")
    assert not failures, _explain(failures, COUNT, "Linux and the engine with pfmigrate semantics")
    assert steps >= total // 4, f"only {steps} of {total} steps came before a MIGRATE: the comparison says too little"
