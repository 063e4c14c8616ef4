"""Capture PF_KEY messages from Linux as test vectors: ``python -m testbed.capture_vectors``.

Runs the kernel tier (in User-Mode Linux) with ``PFMIGRATE_CAPTURE_DIR`` set, so every
``vectors.keep(...)`` in a kernel test stores the bytes Linux sent, then writes them to
``tests/vectors/pfkey_linux.json`` and ``xfrm_linux.json`` with their meaning and their decoded JSON form. The
decoded form is what the plain tier then expects; read the diff before committing it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from pfmigrate.modeljson import to_data
from pfmigrate.pfkey import decode
from pfmigrate.pfkey.jsonform import to_json
from pfmigrate.xfrm import decode as xfrm_decode

ROOT = Path(__file__).resolve().parent.parent
OUTPUTS = {
    "pfkey": ROOT / "tests" / "vectors" / "pfkey_linux.json",
    "xfrm": ROOT / "tests" / "vectors" / "xfrm_linux.json",
}


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
        found = {
            codec: [json.loads(p.read_text()) for p in sorted((Path(directory) / codec).glob("*.json"))]
            for codec in OUTPUTS
        }
    for record in found["pfkey"]:
        record["expected"] = to_json(decode(bytes.fromhex(record["hex"])))
    for record in found["xfrm"]:
        record["expected"] = [to_data(msg) for msg in xfrm_decode(bytes.fromhex(record["hex"]))]
    for codec, output in OUTPUTS.items():
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(found[codec], indent=1) + "\n")
        print(f"wrote {len(found[codec])} vectors to {output.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
