"""pytest plugin: tests marked ``kernel`` run inside User-Mode Linux, in one boot per session.

On the host, each collected ``kernel`` test is replaced by a proxy with the same node
id. The first proxy to run boots UML once and runs pytest inside it on every selected
kernel test; each proxy then reports its own test's outcome from that run, with the
guest's failure text. Inside the guest (``PFMIGRATE_UML_GUEST=1``) the tests run for
real and their outcomes are written to a JSON report on the shared file system.

Without a UML kernel the proxies skip with the reason, except under CI (``CI=true``),
where a missing kernel, and a kernel test that skipped inside the guest, fail.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from testbed.uml import BootResult, KernelUnavailable, boot, find_kernel

GUEST_ENV = "PFMIGRATE_UML_GUEST"
_PASS_THROUGH = ("CI", "HYPOTHESIS_PROFILE")
_RESULTS = pytest.StashKey[dict[str, Any]]()


def in_guest() -> bool:
    return os.environ.get(GUEST_ENV) == "1"


def under_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("uml", "kernel tests in User-Mode Linux")
    group.addoption("--uml-nodeids", help="(in the guest) run only the node ids listed in this file")
    group.addoption("--uml-report", help="(in the guest) write each test's outcome to this JSON file")
    group.addoption("--uml-timeout", type=float, default=1500.0, help="seconds before the guest is killed")
    group.addoption("--uml-keep", action="store_true", help="keep the guest's work directory for inspection")


# --- collection -----------------------------------------------------------------------------


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    if in_guest():
        listing = config.getoption("--uml-nodeids")
        if listing:
            wanted = set(Path(listing).read_text().splitlines())
            keep = [item for item in items if item.nodeid in wanted]
            config.hook.pytest_deselected(items=[item for item in items if item.nodeid not in wanted])
            items[:] = keep
        return
    for i, item in enumerate(items):
        if item.get_closest_marker("kernel") is not None and item.parent is not None:
            items[i] = UmlProxyItem.from_parent(item.parent, name=item.name, original=item)


class GuestFailure(Exception):
    """A kernel test failed inside the guest; the message is the guest's report."""


class UmlProxyItem(pytest.Item):
    """Stands on the host for one kernel test that really runs in the guest."""

    def __init__(self, *, original: pytest.Item, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.original = original
        self.own_markers.extend(original.own_markers)
        self.keywords.update(original.keywords)

    def reportinfo(self) -> tuple[Any, int | None, str]:
        path, line, name = self.original.reportinfo()
        return path, line, name

    def runtest(self) -> None:
        results = _guest_results(self.session)
        if "unavailable" in results:
            reason = f"no kernel for the kernel tier: {results['unavailable']}"
            if under_ci():
                raise GuestFailure(f"{reason} (under CI the kernel tier must run)")
            pytest.skip(reason)
        outcome = results["tests"].get(self.nodeid)
        if outcome is None:
            raise GuestFailure(f"did not run inside UML.\n{results['diagnosis']}")
        if outcome["outcome"] == "passed":
            return
        if outcome["outcome"] == "xfailed":
            pytest.xfail(outcome["text"])
        if outcome["outcome"] == "skipped":
            if under_ci():
                raise GuestFailure(f"skipped inside UML under CI: {outcome['text']}")
            pytest.skip(f"inside UML: {outcome['text']}")
        raise GuestFailure(outcome["text"])

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, GuestFailure):
            return f"[inside User-Mode Linux]\n{excinfo.value}"
        return super().repr_failure(excinfo)


# --- the one guest run --------------------------------------------------------------------------


def _guest_results(session: pytest.Session) -> dict[str, Any]:
    cached = session.stash.get(_RESULTS, None)
    if cached is None:
        cached = session.stash[_RESULTS] = _run_guest(session)
    return cached


def _diagnosis(result: BootResult, keep: Path) -> str:
    tail = "\n".join(result.console.splitlines()[-60:])
    state = "timed out" if result.timed_out else f"exit status {result.status}"
    return f"UML guest {state} after {result.seconds:.1f} s (work directory {keep}). Last lines:\n{tail}"


def _run_guest(session: pytest.Session) -> dict[str, Any]:
    try:
        kernel = find_kernel()
    except KernelUnavailable as exc:
        return {"unavailable": str(exc)}
    proxies = [item for item in session.items if isinstance(item, UmlProxyItem)]
    workdir = Path(tempfile.mkdtemp(prefix="pfmigrate-uml-"))
    listing, report = workdir / "nodeids.txt", workdir / "report.json"
    listing.write_text("\n".join(item.nodeid for item in proxies) + "\n")
    files = sorted({item.nodeid.split("::", 1)[0] for item in proxies})
    rootdir = Path(session.config.rootpath)
    command = [
        sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-m", "kernel",
        "--uml-nodeids", str(listing), "--uml-report", str(report), *files,
    ]  # fmt: skip
    env = {GUEST_ENV: "1", **{k: os.environ[k] for k in _PASS_THROUGH if k in os.environ}}
    env.update({k: v for k, v in os.environ.items() if k.startswith("PFMIGRATE_") and k != GUEST_ENV})
    result = boot(
        command, workdir=workdir, cwd=rootdir, env=env, kernel=kernel, timeout=session.config.getoption("--uml-timeout")
    )
    tests = json.loads(report.read_text()) if report.exists() else {}
    diagnosis = _diagnosis(result, workdir)
    if tests and not session.config.getoption("--uml-keep") and not result.timed_out:
        shutil.rmtree(workdir, ignore_errors=True)
    return {"tests": tests, "diagnosis": diagnosis}


# --- inside the guest: record outcomes -----------------------------------------------------------


class _Recorder:
    """A plugin object, registered only in the guest, that writes each test's outcome."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.outcomes: dict[str, dict[str, str]] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        current = self.outcomes.get(report.nodeid)
        if current is not None and current["outcome"] != "passed":
            return  # the first failure or skip says what happened
        if hasattr(report, "wasxfail"):
            entry = {"outcome": "xfailed", "text": str(report.wasxfail)}
        elif report.failed:
            sections = "\n".join(f"--- {title} ---\n{body}" for title, body in report.sections)
            entry = {"outcome": "failed", "text": f"({report.when}) {report.longreprtext}\n{sections}".rstrip()}
        elif report.skipped:
            longrepr = report.longrepr
            reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
            entry = {"outcome": "skipped", "text": reason}
        elif report.when == "call" or current is None:
            entry = {"outcome": "passed", "text": ""}
        else:
            return
        self.outcomes[report.nodeid] = entry

    def pytest_sessionfinish(self) -> None:
        self.path.write_text(json.dumps(self.outcomes, indent=1))


def pytest_configure(config: pytest.Config) -> None:
    path = config.getoption("--uml-report")
    if path and in_guest():
        config.pluginmanager.register(_Recorder(Path(path)), "pfmigrate-uml-recorder")
