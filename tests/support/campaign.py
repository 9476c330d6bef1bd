"""Campaign plans for the tests: the tiny CPU models of configs/plans/tiny, the simulated meter."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from irene.campaign import RunOptions
from support.paths import ROOT

TINY = ROOT / "configs" / "plans" / "tiny"
FAST = {"warmup": 0, "runs": 1, "min_run_seconds": 0.001}


def write_plan(directory: Path, **overrides) -> Path:
    """A plan in ``directory`` (tiny configs copied beside it) with the keys given."""
    if not (directory / "tiny").exists():
        shutil.copytree(TINY, directory / "tiny")
    plan = {"name": "test", "output": str(directory / "out" / "trees.jsonl"),
            "models": ["tiny/bert", "tiny/gpt2"],
            "grid": {"batch_sizes": [1], "seq_lens": [4, 8]},
            "dtypes": ["float32"], "attn": "eager", "device": "cpu", "meter": "simulated",
            "protocol": dict(FAST)}
    plan.update(overrides)
    path = directory / "plan.yaml"
    path.write_text(yaml.safe_dump(plan, sort_keys=False))
    return path


def quiet() -> RunOptions:
    return RunOptions(progress=False)
