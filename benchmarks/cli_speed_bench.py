"""Wall time of the ``irene`` command line, this checkout beside an earlier commit, in one run.

    python benchmarks/cli_speed_bench.py ../shared/data/irene_device_1.jsonl \
        [--baseline main] [--runs 5]

Runs, as fresh subprocesses (``python -m irene``, ``OMP_NUM_THREADS=1``), each ``--runs`` times:
``irene --help``, ``irene crossvalidate DATA OUT`` (the command docs/predictors.md shows, its
table printed to /dev/null) and ``irene crossvalidate DATA OUT --no-plots`` (OUT a new
temporary directory each time). With ``--baseline REF`` the package of that commit is unpacked
(``git archive``) into a temporary directory and run the same way; the two code trees take
turns run by run, so both see the same load. Prints the date, the load average before and
after, the median, minimum and maximum wall seconds of each command and the median CPU seconds
(user + system, the command and the processes it waited for: on a shared machine the steadier
figure), and whether the two code trees wrote the same outputs: crossvalidation.json (its
``wall_seconds`` and ``data`` aside), the prediction files and the figures, byte for byte,
with the largest relative difference of the errors. The data file is only read; nothing
derived from it is kept.
"""

from __future__ import annotations

import argparse
import datetime
import filecmp
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def unpack(ref: str, into: Path) -> Path:
    """The ``irene`` package of git commit ``ref`` unpacked under ``into``; returns the root to
    put on PYTHONPATH."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "irene"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def commands(data: str) -> dict[str, list[str]]:
    """The timed commands by name (OUT is replaced by a fresh directory each run)."""
    return {"irene --help": ["--help"],
            "irene crossvalidate DATA OUT": ["crossvalidate", data, "OUT"],
            "irene crossvalidate DATA OUT --no-plots": ["crossvalidate", data, "OUT",
                                                        "--no-plots"]}


def run_once(code_root: Path, argv: list[str], scratch: Path
             ) -> tuple[float, float, Path | None]:
    """Wall and CPU seconds (user + system, with the processes it waited for) of one
    ``python -m irene argv`` with ``code_root`` first on the path, and the output directory it
    wrote (None for commands without one)."""
    out = None
    if "OUT" in argv:
        out = Path(tempfile.mkdtemp(dir=scratch)) / "out"
        argv = [str(out) if a == "OUT" else a for a in argv]
    env = {**os.environ, "PYTHONPATH": str(code_root), "OMP_NUM_THREADS": "1"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "irene", *argv], env=env, cwd=scratch,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode != 0:
        raise SystemExit(f"{code_root}: irene {' '.join(argv)} failed ({done.returncode}):\n"
                         f"{done.stderr[-2000:]}")
    return wall, cpu, out


def imported_from(code_root: Path, scratch: Path) -> str:
    """Where ``import irene`` resolves with ``code_root`` on PYTHONPATH, from the directory the
    timed commands run in (checked, not assumed: the working directory comes first)."""
    env = {**os.environ, "PYTHONPATH": str(code_root)}
    return subprocess.run([sys.executable, "-c", "import irene; print(irene.__file__)"],
                          env=env, cwd=scratch, capture_output=True, text=True,
                          check=True).stdout.strip()


def errors(out: Path) -> dict[str, float]:
    """The error figures of a crossvalidation.json, flattened (model/type -> %)."""
    result = json.loads((out / "crossvalidation.json").read_text())
    flat = {f"overall/{k}": v for k, v in result["overall"].items()}
    for model, row in result["per_model"].items():
        flat.update({f"{model}/{k}": v for k, v in row.items()})
    return flat


def largest_relative_difference(a: dict[str, float], b: dict[str, float]) -> float:
    if a.keys() != b.keys():
        return float("inf")
    return max(abs(a[k] - b[k]) / max(abs(a[k]), 1e-300) for k in a)


def differing_files(a: Path, b: Path) -> list[str]:
    """The output files (predictions, figures) that are missing from one of two crossvalidate
    output directories or differ byte for byte; crossvalidation.json compared without its
    ``wall_seconds`` and ``data``."""
    def result(out: Path) -> dict:
        values = json.loads((out / "crossvalidation.json").read_text())
        return {k: v for k, v in values.items() if k not in ("wall_seconds", "data")}

    names = {str(p.relative_to(a)) for p in a.rglob("*") if p.is_file()}
    names |= {str(p.relative_to(b)) for p in b.rglob("*") if p.is_file()}
    names.discard("crossvalidation.json")
    differ = [n for n in sorted(names) if not ((a / n).is_file() and (b / n).is_file()
                                               and filecmp.cmp(a / n, b / n, shallow=False))]
    return differ + ([] if result(a) == result(b) else ["crossvalidation.json"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", help="JSONL trees with ground truth (e.g. irene_device_1.jsonl)")
    parser.add_argument("--baseline", metavar="REF", help="git commit to compare with")
    parser.add_argument("--runs", type=int, default=5, help="runs per command (default 5)")
    args = parser.parse_args()
    data = str(Path(args.data).resolve())
    print(f"date {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}, "
          f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"{args.runs} runs each, OMP_NUM_THREADS=1")
    with tempfile.TemporaryDirectory(prefix="irene-cli-bench-") as tmp:
        scratch = Path(tmp)
        trees = {"this checkout": ROOT}
        if args.baseline:
            rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", args.baseline],
                                 capture_output=True, text=True, check=True).stdout.strip()
            baseline = scratch / "baseline"
            baseline.mkdir()
            label = args.baseline if rev.startswith(args.baseline) else f"{args.baseline} ({rev})"
            trees = {label: unpack(args.baseline, baseline), **trees}
        for label, root in trees.items():
            print(f"  {label}: imports {imported_from(root, scratch)}")
        print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
        walls: dict[tuple[str, str], list[float]] = {}
        cpus: dict[tuple[str, str], list[float]] = {}
        results: dict[str, dict[str, float]] = {}
        kept: dict[tuple[str, str], Path] = {}
        for name, argv in commands(data).items():
            for _ in range(args.runs):
                for label, root in trees.items():  # take turns: both see the same load
                    wall, cpu, out = run_once(root, argv, scratch)
                    walls.setdefault((name, label), []).append(wall)
                    cpus.setdefault((name, label), []).append(cpu)
                    if out is not None:
                        results.setdefault(label, errors(out))
                        if (name, label) in kept:
                            shutil.rmtree(out.parent)
                        else:
                            kept[(name, label)] = out
        print(f"load average after:  {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
        print()
        print(f"{'command':42s} {'code':24s} {'median s':>9s} {'min s':>7s} {'max s':>7s} "
              f"{'CPU s':>6s}")
        for (name, label), values in walls.items():
            print(f"{name:42s} {label:24s} {statistics.median(values):9.2f} {min(values):7.2f} "
                  f"{max(values):7.2f} {statistics.median(cpus[(name, label)]):6.2f}")
        if len(results) == 2:
            first, second = results.values()
            print(f"\ncrossvalidation.json errors, largest relative difference between the two: "
                  f"{largest_relative_difference(first, second):.1e}")
            for name in commands(data):
                outs = [kept[(name, label)] for label in trees if (name, label) in kept]
                if len(outs) == 2:
                    differ = differing_files(*outs)
                    print(f"{name}: outputs of the two "
                          + (f"differ: {', '.join(differ)}" if differ else
                             f"identical ({sum(1 for p in outs[0].rglob('*') if p.is_file())} "
                             "files byte for byte; crossvalidation.json but its wall_seconds "
                             "and data)"))


if __name__ == "__main__":
    main()
