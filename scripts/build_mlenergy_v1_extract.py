"""Rebuild the ML.ENERGY leaderboard v1 extract (datasets/mlenergy-v1/eager.csv) from its CSVs.

Usage::

    python scripts/build_mlenergy_v1_extract.py LEADERBOARD_V2_GIT -o datasets/mlenergy-v1/eager.csv

v1 is the first ML.ENERGY leaderboard (July 2023): Hugging Face transformers decoding in eager
PyTorch 2.0.1 through FastChat, batch size 1, fp16, up to 512 new tokens per ShareGPT prompt. Its
data are ``data/<GPU>_<task>_benchmark.csv`` at tag ``2023-07-06`` of
https://github.com/ml-energy/leaderboard-v2 (``--rev``; a checkout of that tag also works). Each
row is one model's mean over the prompts. The V100 files are the independent check of issue 21:
they are skipped by name before being read (``irene.hardware.families.is_held_out``). Columns,
units and sources: ``datasets/mlenergy-v1/schema.json``; provenance beside the CSV. Outputs are
written atomically. Bad input: one line naming the file, line and field, exit code 2.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_mlenergy_extract import (  # noqa: E402  (a sibling script)
    ExtractError,
    Source,
    public_extract_main,
)

from irene.hardware.families import UnknownFamily, family, is_held_out  # noqa: E402
from irene.hardware.public_models import ModelFacts  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_PATH = ROOT / "datasets" / "mlenergy-v1" / "schema.json"
DATA_DIR = "data"
DEFAULT_REV = "2023-07-06"
FILE_NAME = re.compile(r"^([A-Za-z0-9]+)_([a-z-]+)_benchmark\.csv$")
GPUS = {"A100": "A100", "A40": "A40"}
TASKS = ("chat", "chat-concise", "instruct", "instruct-concise")
COLUMNS = ("model", "throughput", "response_length", "latency", "energy")
RUNTIME = "hf-eager (PyTorch 2.0.1, FastChat)"
MAX_NEW_TOKENS = 512  # scripts/benchmark.py at the tag


def load_schema(path: Path = SCHEMA_PATH) -> dict[str, Any]:
    """The extract's schema: field names in column order and the sort key."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ExtractError(f"{path}: cannot read the schema: {exc}") from exc


def open_source(path: str | Path, rev: str = DEFAULT_REV) -> Source:
    """A checkout of the tag (``data/A100_chat_benchmark.csv`` present) or a git directory."""
    root = Path(path).expanduser()
    if (root / DATA_DIR / "A100_chat_benchmark.csv").is_file():
        return Source(root, None)
    if not root.exists():
        raise ExtractError(f"{root}: no such file or directory")
    source = Source(root, rev)
    try:
        source._git("cat-file", "-e", f"{rev}:{DATA_DIR}/A100_chat_benchmark.csv")
    except ExtractError as exc:
        raise ExtractError(f"{root}: neither a checkout of the v1 leaderboard nor a git "
                           f"directory holding {DATA_DIR}/A100_chat_benchmark.csv at {rev}") \
            from exc
    return source


def list_data_files(source: Source) -> tuple[list[str], list[str]]:
    """(benchmark CSVs to read, held-out CSVs skipped by name, never opened)."""
    files, skipped = [], []
    for relpath in source.list_files(DATA_DIR):
        match = FILE_NAME.match(Path(relpath).name)
        if not match:
            continue
        gpu, task = match.groups()
        if is_held_out(gpu=gpu):
            skipped.append(relpath)
            continue
        if gpu not in GPUS or task not in TASKS:
            raise ExtractError(f"{source.describe(relpath)}: unknown GPU or task "
                               f"{gpu!r}/{task!r} (known: {', '.join(GPUS)} / {', '.join(TASKS)})")
        files.append(relpath)
    return files, skipped


def _number(row: dict[str, str], key: str, where: str) -> float:
    try:
        value = float(row[key])
    except (TypeError, ValueError):
        raise ExtractError(f"{where}: {key}: expected a number, got {row.get(key)!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ExtractError(f"{where}: {key}: expected a finite number > 0, got {row[key]!r}")
    return value


def file_rows(text: str, relpath: str, where: str, facts: dict[str, ModelFacts]) \
        -> list[dict[str, Any]]:
    """The rows of one ``<GPU>_<task>_benchmark.csv``."""
    gpu, task = FILE_NAME.match(Path(relpath).name).groups()  # type: ignore[union-attr]
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise ExtractError(f"{where}: header: missing column(s) {', '.join(missing)}")
    rows = []
    for line, raw in enumerate(reader, start=2):
        at = f"{where}:{line}"
        model_id = raw["model"].strip()
        if model_id not in facts:
            raise ExtractError(f"{at}: model: {model_id!r} has no row in "
                               "datasets/architectures/architectures.csv")
        try:
            fam = family(model_id)
        except UnknownFamily as exc:
            raise ExtractError(f"{at}: model: {exc}") from None
        fact = facts[model_id]
        energy = _number(raw, "energy", at)
        length = _number(raw, "response_length", at)
        latency = _number(raw, "latency", at)
        rows.append({
            "model_id": model_id, "family": fam, "task": task, "gpu_model": GPUS[gpu],
            "num_gpus": 1, "batch_size": 1, "runtime": RUNTIME, "dtype": "fp16",
            "max_new_tokens": MAX_NEW_TOKENS, "kind": fact.kind,
            "total_params_b": fact.total_params() / 1e9,
            "active_params_b": fact.active_params() / 1e9,
            "layers": fact.layers, "encoder_layers": fact.encoder_layers, "hidden": fact.hidden,
            "heads": fact.heads, "kv_heads": fact.kv_heads, "head_dim": fact.head_dim,
            "intermediate": fact.intermediate, "vocab": fact.vocab,
            "tied_embeddings": fact.tied_embeddings,
            "kv_bytes_per_token": fact.kv_bytes_per_token(),
            "output_len_mean": length, "latency_s": latency,
            "throughput_tok_s": _number(raw, "throughput", at),
            "energy_per_response_j": energy, "energy_per_token_j": energy / length,
            "avg_power_w": energy / latency,
        })
    if not rows:
        raise ExtractError(f"{where}: no rows")
    return rows


def build_rows(source: Source, facts: dict[str, ModelFacts]) \
        -> tuple[list[dict[str, Any]], list[str], list[str]]:
    """All rows sorted by the schema key, the files read and the held-out files skipped."""
    files, skipped = list_data_files(source)
    if not files:
        raise ExtractError(f"{source.describe(DATA_DIR)}: no <GPU>_<task>_benchmark.csv files")
    rows: list[dict[str, Any]] = []
    for relpath in files:
        rows.extend(file_rows(source._read_text(relpath), relpath, source.describe(relpath),
                              facts))
    key = load_schema()["key"]
    configs = [tuple(r[k] for k in key) for r in rows]
    if len(set(configs)) != len(configs):
        dup = next(c for c in configs if configs.count(c) > 1)
        raise ExtractError(f"{source.describe(DATA_DIR)}: configuration {dup} listed twice")
    return sorted(rows, key=lambda r: tuple(r[k] for k in key)), files, skipped


def provenance(source: Source, files: list[str], skipped: list[str],
               rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Where the extract came from and what it holds."""
    per_gpu = {gpu: {"rows": sum(r["gpu_model"] == gpu for r in rows),
                     "models": len({r["model_id"] for r in rows if r["gpu_model"] == gpu})}
               for gpu in sorted({r["gpu_model"] for r in rows})}
    return {
        "source_repository": "https://github.com/ml-energy/leaderboard-v2",
        "source_rev": source.rev,
        "source_commit": source.commit(),
        "source_files": files,
        "held_out_not_read": skipped,
        "license": "Apache-2.0 (LICENSE of ml-energy/leaderboard-v2 at the tag); LEADERBOARD.md: "
                   "'This leaderboard is a research preview intended for non-commercial use "
                   "only.'",
        "built_by": "scripts/build_mlenergy_v1_extract.py",
        "rows": len(rows),
        "models": len({r["model_id"] for r in rows}),
        "per_gpu": per_gpu,
    }


def main(argv: list[str] | None = None) -> int:
    return public_extract_main(argv, description=__doc__.split("\n\n")[0],
                               leaderboard_help="git directory of ml-energy/leaderboard-v2 (or a "
                               "checkout of tag 2023-07-06)",
                               default_rev=DEFAULT_REV, module=sys.modules[__name__],
                               skipped_what="held-out files")


if __name__ == "__main__":
    sys.exit(main())
