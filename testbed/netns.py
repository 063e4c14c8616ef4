"""Run a function in a network namespace of its own, on this machine's kernel.

The build machines' kernel has XFRM policies (no ESP, no AF_KEY): enough to test the
XFRM backend's policy and MIGRATE paths without User-Mode Linux. ``in_new_netns(fn)``
forks, the child moves to a new, empty network namespace (``unshare(CLONE_NEWNET)``)
and runs ``fn``; its return value (or its traceback) comes back through a pipe. A
subprocess started by ``fn`` is in that namespace too.
"""

from __future__ import annotations

import ctypes
import os
import pickle
import traceback
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
CLONE_NEWNET = 0x40000000


class NetnsUnavailable(Exception):
    """This process may not create network namespaces (not root, or a sandbox forbids it)."""


class NetnsFailure(AssertionError):
    """The function failed inside the namespace; the message is its traceback."""


def check_netns() -> None:
    """``NetnsUnavailable`` if ``in_new_netns`` cannot work here."""
    try:
        in_new_netns(lambda: None)
    except NetnsFailure as exc:
        raise NetnsUnavailable(str(exc).strip().splitlines()[-1]) from None


def _enter_new_netns() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"unshare(CLONE_NEWNET): {os.strerror(errno)}")


def fork_call(enter: Callable[[], None], fn: Callable[[], T]) -> tuple[bool, object] | None:
    """Run ``fn`` in a forked child after ``enter()`` (which moves it somewhere): ``(True,
    its value)``, ``(False, its traceback)``, or ``None`` if the child died without an
    answer. The value comes back pickled through a pipe."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into the caller's code
        os.close(read_end)
        try:
            enter()
            outcome: tuple[bool, object] = (True, fn())
        except BaseException:  # everything goes back to the parent
            outcome = (False, traceback.format_exc())
        try:
            data = pickle.dumps(outcome)
        except Exception:  # an unpicklable result is a failure too
            data = pickle.dumps((False, traceback.format_exc()))
        with os.fdopen(write_end, "wb") as pipe:
            pipe.write(data)
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    if not data:
        return None
    answer: tuple[bool, object] = pickle.loads(data)  # our own child's answer
    return answer


def in_new_netns(fn: Callable[[], T]) -> T:
    answer = fork_call(_enter_new_netns, fn)
    if answer is None:
        raise NetnsFailure("the namespace child died without an answer")
    ok, value = answer
    if not ok:
        raise NetnsFailure(str(value))
    return value  # type: ignore[return-value]
