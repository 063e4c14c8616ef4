"""Differential testing of PF_KEY engines against Linux ``af_key``.

``sequences`` makes seeded random sequences of PF_KEY messages sent on three sockets,
``linux`` runs them against the kernel (inside User-Mode Linux) and records every byte
each socket receives, ``engine`` runs them against an engine of our own through a small
interface, and ``transcript.compare`` explains, message by message, where two runs
differ. ``python -m tests.differential.replay SEED`` shows one sequence and its run.
"""
