"""Wall time of ``irene estimate MODEL --serving vllm`` of a built-in name, per checkout.

Usage: ``python benchmarks/serving_estimate_speed.py ROOT [ROOT ...] [--runs 3]``: runs the
command ``--runs`` times with ``PYTHONPATH=ROOT`` (one torch thread) for each checkout root, and
prints each run's wall time in seconds, the 1-minute load average before it, and the estimate
it printed (J per output token), so two checkouts can be compared on the same machine.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

COMMAND = ["-m", "irene", "estimate", "meta-llama/Llama-3.1-70B-Instruct", "--serving", "vllm",
           "--gpu", "H100", "--num-gpus", "4", "--quiet"]


def run_once(root: str) -> tuple[float, float, str]:
    """(wall seconds, 1-minute load before, printed output) of one run from ``root``."""
    load = os.getloadavg()[0]
    env = {**os.environ, "PYTHONPATH": root, "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, *COMMAND], env=env, cwd=root, capture_output=True,
                          text=True, check=True)
    return time.perf_counter() - start, load, proc.stdout.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="+", help="checkout roots to compare")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    print("python", " ".join(COMMAND))
    for root in args.roots:
        for i in range(1, args.runs + 1):
            wall, load, out = run_once(root)
            print(f"{root} run {i}: wall {wall:.2f} s, load {load:.2f}, printed {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
