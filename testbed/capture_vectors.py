"""Capture PF_KEY messages from Linux as test vectors: ``python -m testbed.capture_vectors``.

Runs the kernel tier (in User-Mode Linux) with ``PFMIGRATE_CAPTURE_DIR`` set, so every
``vectors.keep(...)`` in a kernel test stores the bytes Linux sent, then writes them to
``tests/vectors/pfkey_linux.json`` with their meaning and their decoded JSON form. The
decoded form is what the plain tier then expects; read the diff before committing it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from pfmigrate.pfkey import decode
from pfmigrate.pfkey.jsonform import to_json

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "tests" / "vectors" / "pfkey_linux.json"


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="pfmigrate-capture-") as directory:
        env = {"PFMIGRATE_CAPTURE_DIR": directory}
        run = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-m", "kernel", "tests/kernel"],
            cwd=ROOT,
            env={**os.environ, **env},
        )
        if run.returncode != 0:
            print("the kernel tier failed; no vectors written", file=sys.stderr)
            return run.returncode
        records = [json.loads(path.read_text()) for path in sorted(Path(directory).glob("*.json"))]
    for record in records:
        record["expected"] = to_json(decode(bytes.fromhex(record["hex"])))
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(json.dumps(records, indent=1) + "\n")
    print(f"wrote {len(records)} vectors to {OUTPUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
