"""Wall and CPU time of the per-node GPU estimate and the serving estimate as commands, per
checkout, with a check that every checkout prints the same numbers.

Usage::

    python benchmarks/estimate_speed.py ROOT [ROOT ...] [--runs 5] [--cases bert,serving]

For each case and each checkout root, runs ``python -m irene estimate ...`` as a subprocess
(``PYTHONPATH=ROOT``, cwd ROOT, one thread: ``OMP_NUM_THREADS=MKL_NUM_THREADS=1``) ``--runs``
times, the roots interleaved run by run so that they share the machine's load, and prints the
median wall time and the median CPU time (user + system of the child) with the range of the
1-minute load average before the runs. Cases:

* ``bert``: ``bert-base-uncased --batch-size 8 --seq-len 128 --gpu A100``, first run (the trace
  cache off: ``IRENE_CACHE_DIR=off``; a checkout without a cache ignores it);
* ``bert-cached``: the same command again with a warm trace cache (one unmeasured run fills a
  cache directory of each root's own first; a checkout without a cache traces every time);
* ``decode``: ``gpt2 --batch-size 4 --seq-len 1 --phase decode --context-len 64 --gpu A100``;
* ``generation``: ``gpt2 --prompt-len 32 --new-tokens 16 --gpu A100``;
* ``serving``: ``CONFIG_DIR --serving vllm --gpu H100 --num-gpus 4`` where CONFIG_DIR holds
  Llama-3.1-70B-Instruct's ``config.json`` (written from the shipped serving configs); also
  reports whether the command imported torch or transformers.

Then (unless ``--no-check``) every case is run once more per root with ``--json --depth -1``
(every node) and the outputs are compared across roots, the root's path replaced by ``ROOT``
(the data line names the shipped parameter file's path); a cached run is compared with a fresh
one too. Differences are printed and make the exit status 1.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

BERT = ["bert-base-uncased", "--batch-size", "8", "--seq-len", "128", "--gpu", "A100"]
DECODE = ["gpt2", "--batch-size", "4", "--seq-len", "1", "--phase", "decode", "--context-len",
          "64", "--gpu", "A100"]
GENERATION = ["gpt2", "--prompt-len", "32", "--new-tokens", "16", "--gpu", "A100"]
SERVING = ["--serving", "vllm", "--gpu", "H100", "--num-gpus", "4"]
SERVING_MODEL = "meta-llama/Llama-3.1-70B-Instruct"
IMPORT_CHECK = (
    "import sys\n"
    "from irene.cli import main\n"
    "main(sys.argv[1:])\n"
    "print('imported:', sorted(m for m in ('torch', 'transformers') if m in sys.modules),"
    " file=sys.stderr)\n")


@dataclass
class Case:
    """One command: its arguments after ``irene estimate``, and whether it uses the cache."""

    name: str
    args: list[str]
    cached: bool = False


@dataclass
class Runs:
    """The measured runs of one case from one root: wall s, CPU s, 1-minute load before."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    load: list[float] = field(default_factory=list)


def environment(root: str, cache: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": root, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "IRENE_CACHE_DIR": cache}


def run(root: str, args: list[str], cache: str, *, python_args: list[str] | None = None
        ) -> tuple[float, float, subprocess.CompletedProcess]:
    """(wall s, CPU s of the child, the finished process) of one command from ``root``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, *(python_args or ["-m", "irene"]), "estimate", *args],
                          env=environment(root, cache), cwd=root, capture_output=True,
                          text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        raise SystemExit(f"{root}: irene estimate {' '.join(args)} failed:\n{proc.stderr}")
    return wall, cpu, proc


def serving_config_dir(root: str, where: Path) -> Path:
    """A directory holding the 70B model's config.json, from ``root``'s shipped configs."""
    shipped = json.loads((Path(root) / "irene/data/serving_configs.json").read_text())
    directory = where / "Llama-3.1-70B-Instruct"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(shipped[SERVING_MODEL]))
    return directory


def cases(names: list[str], config_dir: Path) -> list[Case]:
    known = {"bert": Case("bert", BERT), "bert-cached": Case("bert-cached", BERT, cached=True),
             "decode": Case("decode", DECODE), "generation": Case("generation", GENERATION),
             "serving": Case("serving", [str(config_dir), *SERVING])}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"--cases: unknown {unknown}; known: {', '.join(known)}")
    return [known[n] for n in names]


def time_case(case: Case, roots: list[str], runs: int, caches: dict[str, str]) -> dict[str, Runs]:
    """Interleaved runs of ``case`` from every root."""
    out = {root: Runs() for root in roots}
    if case.cached:
        for root in roots:  # fill each root's cache
            run(root, case.args, caches[root])
    for _ in range(runs):
        for root in roots:
            load = os.getloadavg()[0]
            wall, cpu, _ = run(root, case.args, caches[root] if case.cached else "off")
            out[root].wall.append(wall)
            out[root].cpu.append(cpu)
            out[root].load.append(load)
    return out


def normalised(text: str, root: str) -> str:
    return text.replace(str(Path(root).resolve()), "ROOT").replace(root.rstrip("/"), "ROOT")


def check_case(case: Case, roots: list[str], caches: dict[str, str]) -> list[str]:
    """Differences between the roots' ``--json --depth -1`` outputs of ``case`` (and, for a
    cached case, between a cached and a fresh run of each root)."""
    args = [*case.args, "--json", "--depth", "-1"]
    if case.name == "serving":
        args = [*case.args, "--json"]
    outputs = {}
    problems = []
    for root in roots:
        _, _, proc = run(root, args, "off")
        outputs[root] = normalised(proc.stdout, root)
        if case.cached:
            run(root, args, caches[root])  # fill the cache for this output format
            _, _, again = run(root, args, caches[root])
            if normalised(again.stdout, root) != outputs[root]:
                problems.append(f"{case.name}: {root}: the cached run prints other numbers")
    first = roots[0]
    for root in roots[1:]:
        if outputs[root] != outputs[first]:
            problems.append(f"{case.name}: {root} prints other numbers than {first}")
    return problems


def imports_of_serving(root: str, case: Case) -> str:
    _, _, proc = run(root, [*case.args, "--quiet"], "off",
                     python_args=["-c", IMPORT_CHECK])
    return proc.stderr.strip().splitlines()[-1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="+", help="checkout roots to compare")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--cases", default="bert,bert-cached,serving,decode,generation",
                        help="comma-separated cases (default: all)")
    parser.add_argument("--no-check", action="store_true",
                        help="skip the comparison of the printed numbers")
    args = parser.parse_args(argv)
    roots = [str(Path(r).resolve()) for r in args.roots]
    with tempfile.TemporaryDirectory(prefix="estimate-speed-") as tmp:
        caches = {root: str(Path(tmp) / f"cache{i}") for i, root in enumerate(roots)}
        config_dir = serving_config_dir(roots[0], Path(tmp))
        chosen = cases([c.strip() for c in args.cases.split(",") if c.strip()], config_dir)
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, one thread, "
              f"{args.runs} runs per root, roots interleaved; "
              f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
        problems = []
        for case in chosen:
            print(f"\n{case.name}: irene estimate {' '.join(case.args)}"
                  f"{' (trace cache warm)' if case.cached else ''}")
            results = time_case(case, roots, args.runs, caches)
            for root, r in results.items():
                print(f"  {root}: wall median {statistics.median(r.wall):.2f} s "
                      f"(min {min(r.wall):.2f}, max {max(r.wall):.2f}), CPU median "
                      f"{statistics.median(r.cpu):.2f} s, load {min(r.load):.2f}-"
                      f"{max(r.load):.2f}")
            if case.name == "serving":
                for root in roots:
                    print(f"  {root}: {imports_of_serving(root, case)}")
            if not args.no_check:
                found = check_case(case, roots, caches)
                problems += found
                print("  same numbers from every root" + (" and from the cache"
                                                          if case.cached else "")
                      if not found else "  " + "; ".join(found))
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
