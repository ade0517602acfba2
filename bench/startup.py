"""Start-up cost of the CLI: wall seconds of `rag status` and `rag search` (each mode), each a fresh
process as a user runs them, on an index of the bundled samples. With ``--baseline DIR`` the same
commands run from another checkout of this repository (say, an older commit) in the same run,
alternating, and the table gives the ratio.

    .venv/bin/python bench/startup.py [--repeat 5] [--baseline /tmp/old-checkout]

Where the time goes: ``python -X importtime -m app.cli status`` (torch and transformers take
seconds to import; commands that load no model must not import them).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import footer, header, table

REPO = Path(__file__).resolve().parent.parent
COMMANDS = {
    "rag status": ["status"],
    "rag search (dense)": ["search", "how do I make a virtual environment", "--mode", "dense"],
    "rag search (sparse)": ["search", "how do I make a virtual environment", "--mode", "sparse"],
    "rag search (hybrid)": ["search", "how do I make a virtual environment", "--mode", "hybrid"],
}


def run(checkout: Path, args: list[str], env: dict) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=checkout, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--baseline", type=Path, help="another checkout to time the same commands from")
    args = ap.parse_args()
    start = header("CLI start-up", repeat=args.repeat, baseline=args.baseline or "-")
    with tempfile.TemporaryDirectory(prefix="rag-startup-") as tmp:
        env = {**os.environ, "RAG_DATA_DIR": tmp, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
        subprocess.run([sys.executable, "-m", "app.cli", "index", str(REPO / "samples" / "python-howto"),
                        "--no-progress"], cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL)
        rows = []
        for name, cmd in COMMANDS.items():
            ours, base = [], []
            for _ in range(args.repeat):
                ours.append(run(REPO, cmd, env))
                if args.baseline:
                    base.append(run(args.baseline, cmd, env))
            row = {"command": name, "seconds (median)": round(statistics.median(ours), 2)}
            if base:
                row["baseline seconds"] = round(statistics.median(base), 2)
                row["baseline / this"] = round(statistics.median(base) / statistics.median(ours), 2)
            rows.append(row)
            print(row, flush=True)
    table(rows, list(rows[0]))
    footer(start)


if __name__ == "__main__":
    main()
