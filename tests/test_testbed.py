"""The kernel tier's own rules: without a kernel it skips, but under CI it fails."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ONE_KERNEL_TEST = "tests/kernel/test_pfkey_linux.py::test_register_lists_the_kernels_algorithms"


def run_without_kernel(ci: bool) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PFMIGRATE_UML"] = "/nonexistent/linux.uml"
    if ci:
        env["CI"] = "true"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rs", ONE_KERNEL_TEST],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_missing_kernel_skips_with_its_reason() -> None:
    done = run_without_kernel(ci=False)
    assert done.returncode == 0, done.stdout
    assert "1 skipped" in done.stdout
    assert "PFMIGRATE_UML=/nonexistent/linux.uml is not a file" in done.stdout


def test_missing_kernel_fails_under_ci() -> None:
    done = run_without_kernel(ci=True)
    assert done.returncode == 1, done.stdout
    assert "under CI the kernel tier must run" in done.stdout
