"""Rebuild irene/data/humaneval_prompts.jsonl.gz from the public openai/human-eval repository.

Keeps only ``task_id`` and ``prompt`` of each of HumanEval's 164 problems (no solutions, tests or
entry points): the code prompts ``irene load`` and ``irene serve-bench`` send by default.
HumanEval is MIT-licensed (Copyright (c) OpenAI); see irene/data/HUMANEVAL_NOTICE.md.

Usage (needs git and network access to GitHub)::

    python scripts/build_humaneval_prompts.py [--source PATH/TO/HumanEval.jsonl.gz]

Without ``--source`` it clones https://github.com/openai/human-eval (shallow) into a temporary
directory and reads data/HumanEval.jsonl.gz there. The output is deterministic (gzip mtime 0).
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import subprocess
import tempfile
from pathlib import Path

REPO = "https://github.com/openai/human-eval"
OUTPUT = Path(__file__).resolve().parent.parent / "irene" / "data" / "humaneval_prompts.jsonl.gz"
EXPECTED = 164


def read_problems(path: Path) -> list[dict[str, str]]:
    """task_id + prompt of every problem in HumanEval.jsonl.gz, in file order."""
    rows = []
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                problem = json.loads(line)
                rows.append({"task_id": problem["task_id"], "prompt": problem["prompt"]})
    if len(rows) != EXPECTED:
        raise SystemExit(f"{path}: {len(rows)} problems, expected {EXPECTED}")
    return rows


def write_prompts(rows: list[dict[str, str]], output: Path) -> None:
    """Gzipped JSONL, one {"task_id", "prompt"} per line, with a fixed mtime."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0, filename="") as handle:
        for row in rows:
            handle.write((json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8"))
    output.write_bytes(buffer.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", type=Path, help="a local HumanEval.jsonl.gz")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    if args.source:
        rows = read_problems(args.source)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(["git", "clone", "--depth", "1", REPO, tmp], check=True)
            rows = read_problems(Path(tmp) / "data" / "HumanEval.jsonl.gz")
    write_prompts(rows, args.output)
    print(f"wrote {len(rows)} prompts to {args.output}")


if __name__ == "__main__":
    main()
