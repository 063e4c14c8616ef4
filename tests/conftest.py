import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from testbed.netns import NetnsUnavailable, check_netns

pytest_plugins = ["testbed.pytest_uml"]


@pytest.fixture(scope="session")
def netns() -> None:
    """Tests that create network namespaces on this machine's kernel; they skip where
    that is not allowed, except under CI, where it is a failure."""
    try:
        check_netns()
    except NetnsUnavailable as exc:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"cannot create network namespaces under CI: {exc}")
        pytest.skip(f"cannot create network namespaces here: {exc}")


@pytest.fixture
def open_directory() -> Iterator[Path]:
    """A directory any user may reach (pytest's own are root's alone), for keyd's
    socket when a test talks to it as another user."""
    directory = Path(tempfile.mkdtemp(prefix="keyd-"))
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory)
