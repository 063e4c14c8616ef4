"""The build backend: setuptools', with the files a deployment needs put into the wheel.

The examples, the documentation, the man pages, the systemd units and the shell
completion live at the top of the source tree, where people read and edit them, not
inside ``src/pfmigrate``. ``build_py`` here copies them into the wheel as package data
under ``pfmigrate/share/`` (``pfmigrate demo --files`` prints where that is once
installed); MANIFEST.in puts the same files into the sdist, from which a wheel is built
the same way. An editable install reads them from the source tree instead.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools.build_meta import *  # noqa: F403  (the PEP 517 hooks, unchanged)
from setuptools.command.build_py import build_py as _build_py

# (glob in the source tree, directory under pfmigrate/share/)
SHARED = (
    ("README.md", "doc"),
    ("LICENSE", "doc"),
    ("docs/*.md", "doc"),
    ("examples/*.toml", "examples"),
    ("docs/man/*.[0-9]", "man"),
    ("packaging/*.service", "systemd"),
    ("packaging/completion/pfmigrate.bash", "completion"),
)


def shared_files(root: Path) -> list[tuple[Path, str]]:
    """Each file to ship, with its place under ``pfmigrate/share/``."""
    found = []
    for pattern, place in SHARED:
        matches = sorted(root.glob(pattern))
        if not matches:
            raise FileNotFoundError(f"nothing in {root} matches {pattern}: the wheel would lack it")
        found += [(path, f"{place}/{path.name}") for path in matches]
    return found


class build_py(_build_py):  # setuptools names its commands so
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        share = Path(self.build_lib) / "pfmigrate" / "share"
        for source, place in shared_files(Path.cwd()):
            target = share / place
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
