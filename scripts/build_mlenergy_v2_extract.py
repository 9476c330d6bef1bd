"""Rebuild the ML.ENERGY leaderboard v2 LLM extract (datasets/mlenergy-v2/llm.csv) from its JSON.

Usage::

    python scripts/build_mlenergy_v2_extract.py LEADERBOARD_V2 -o datasets/mlenergy-v2/llm.csv

``LEADERBOARD_V2`` is a checkout of https://github.com/ml-energy/leaderboard-v2 or its git
directory (read at ``--rev``, default ``HEAD``). Every
``data/llm_text_generation/{chat,code}/<GPU>/<org>/<model>/bs<N>+tp<T>+pp<P>.json`` becomes one
row (vLLM 0.5.4, steady state), **except** the google/gemma-2 and microsoft/Phi-3 families: they
are the independent check of issue 21, skipped by their path before any file of theirs is read
(``irene.hardware.families.is_held_out``). Architecture facts (parameters, layers, KV bytes) come
from ``datasets/architectures/architectures.csv``; the family from
``irene.hardware.families``. Columns, units and sources: ``datasets/mlenergy-v2/schema.json``.
Beside the CSV, ``<name>.provenance.json`` records the source commit, files and row counts. Both
are written atomically. Bad input: one line naming the file and the field, exit code 2.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_mlenergy_extract import (  # noqa: E402  (a sibling script)
    ExtractError,
    Source,
    _positive_float,
    _positive_int,
    _string,
    public_extract_main,
)

from irene.hardware.families import UnknownFamily, family, is_held_out  # noqa: E402
from irene.hardware.public_models import ModelFacts  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_PATH = ROOT / "datasets" / "mlenergy-v2" / "schema.json"
DATA_DIR = "data/llm_text_generation"
TASKS = ("chat", "code")
#: directory name -> (gpu_model column, GPU name in the JSON, power limit set by the benchmark (W):
#: ``--power-limits`` of benchmark/llm_text_generation/*/pegasus/<GPU>/queue_*.yaml)
GPUS = {"H100 80GB HBM3": ("H100", "NVIDIA H100 80GB HBM3", 700.0),
        "A100-SXM4-40GB": ("A100-40GB", "NVIDIA A100-SXM4-40GB", 400.0)}
FILE_NAME = re.compile(r"^bs(\d+)\+tp(\d+)\+pp(\d+)\.json$")
#: prompts of each task (benchmark/llm_text_generation/*/README.md)
PROMPTS = {"chat": "ShareGPT (500 first-turn prompts)", "code": "HumanEval+ (EvalPlus)"}
RUNTIME = "vllm-0.5.4"
#: tolerance of the identities the schema promises (relative)
TOLERANCE = 1e-6


def load_schema(path: Path = SCHEMA_PATH) -> dict[str, Any]:
    """The extract's schema: field names in column order and the sort key."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ExtractError(f"{path}: cannot read the schema: {exc}") from exc


def open_source(path: str | Path, rev: str = "HEAD") -> Source:
    """A checkout (``data/llm_text_generation`` present) or a git directory read at ``rev``."""
    root = Path(path).expanduser()
    if (root / DATA_DIR).is_dir():
        return Source(root, None)
    if not root.exists():
        raise ExtractError(f"{root}: no such file or directory")
    source = Source(root, rev)
    try:
        source._git("cat-file", "-e", f"{rev}:{DATA_DIR}")
    except ExtractError as exc:
        raise ExtractError(f"{root}: neither a leaderboard-v2 checkout nor a git directory "
                           f"holding {DATA_DIR} at {rev}") from exc
    return source


def list_data_files(source: Source) -> tuple[list[str], list[str]]:
    """(files to read, model directories skipped as held out), paths relative to the root.

    Only names are listed here; nothing of a held-out model is opened.
    """
    if source.rev is None:
        base = source.root / DATA_DIR
        names = sorted(str(p.relative_to(source.root)) for p in base.rglob("*.json"))
    else:
        out = source._git("ls-tree", "-r", "--name-only", source.rev, "--", DATA_DIR)
        names = sorted(n for n in out.splitlines() if n.endswith(".json"))
    files, skipped = [], set()
    for name in names:
        parts = name[len(DATA_DIR) + 1:].split("/")
        if len(parts) != 5:  # <task>/models.json and the like
            continue
        task, gpu_dir, org, model_dir, _ = parts
        if task not in TASKS:
            continue
        if is_held_out(f"{org}/{model_dir}"):
            skipped.add(f"{task}/{gpu_dir}/{org}/{model_dir}")
            continue
        files.append(name)
    return files, sorted(skipped)


def file_row(payload: Any, relpath: str, where: str, facts: dict[str, ModelFacts]) \
        -> dict[str, Any]:
    """One row from one ``bs*+tp*+pp*.json`` (its path gives task, GPU and max_num_seqs)."""
    task, gpu_dir, org, model_dir, name = relpath[len(DATA_DIR) + 1:].split("/")
    match = FILE_NAME.match(name)
    if not match:
        raise ExtractError(f"{where}: file name: expected bs<N>+tp<T>+pp<P>.json")
    if gpu_dir not in GPUS:
        raise ExtractError(f"{where}: GPU directory {gpu_dir!r} unknown (known: "
                           f"{', '.join(GPUS)})")
    gpu_model, gpu_name, power_limit = GPUS[gpu_dir]
    model_id = _string(payload, "Model", where)
    if is_held_out(model_id):
        raise ExtractError(f"{where}.Model: a held-out model in a directory not named for it; "
                           "stopped without using its numbers")
    if not f"{org}/{model_dir}".startswith(model_id):
        raise ExtractError(f"{where}.Model: {model_id!r} does not match the directory "
                           f"{org}/{model_dir}")
    if _string(payload, "GPU", where) != gpu_name:
        raise ExtractError(f"{where}.GPU: expected {gpu_name!r} for directory {gpu_dir!r}")
    tp, pp = _positive_int(payload, "TP", where), _positive_int(payload, "PP", where)
    max_num_seqs = int(match.group(1))
    if (tp, pp) != (int(match.group(2)), int(match.group(3))):
        raise ExtractError(f"{where}.TP: TP {tp} / PP {pp} disagree with the file name")
    max_batch = _positive_int(payload, "Max BS (reqs)", where)
    if max_batch != max_num_seqs * pp:
        raise ExtractError(f"{where}.Max BS (reqs): {max_batch} != max_num_seqs {max_num_seqs}"
                           f" x PP {pp}")
    if model_id not in facts:
        raise ExtractError(f"{where}.Model: {model_id!r} has no row in "
                           "datasets/architectures/architectures.csv")
    fact = facts[model_id]
    try:
        fam = family(model_id)
    except UnknownFamily as exc:
        raise ExtractError(f"{where}.Model: {exc}") from None
    energy_request = _positive_float(payload, "Energy/req (J)", where)
    output_len = _positive_float(payload, "Avg Output Tokens", where)
    throughput = _positive_float(payload, "Token tput (tok/s)", where)
    energy_token = energy_request / output_len
    num_gpus = tp * pp
    return {
        "model_id": model_id, "family": fam, "task": task, "prompts": PROMPTS[task],
        "gpu_model": gpu_model, "gpu_name": gpu_name, "power_limit_w": power_limit,
        "num_gpus": num_gpus, "tensor_parallel": tp, "pipeline_parallel": pp,
        "max_num_seqs": max_num_seqs, "max_batch_size": max_batch,
        "avg_batch_size": _positive_float(payload, "Avg BS (reqs)", where),
        "runtime": RUNTIME, "dtype": "half",
        "architecture": "moe" if fact.is_moe else "dense",
        "total_params_b": fact.total_params() / 1e9, "active_params_b": fact.active_params() / 1e9,
        "layers": fact.layers, "hidden": fact.hidden, "heads": fact.heads,
        "kv_heads": fact.kv_heads, "head_dim": fact.head_dim, "intermediate": fact.intermediate,
        "vocab": fact.vocab, "experts": fact.experts, "experts_per_token": fact.experts_per_token,
        "tied_embeddings": fact.tied_embeddings, "kv_bytes_per_token": fact.kv_bytes_per_token(),
        "output_len_mean": output_len,
        "energy_per_request_j": energy_request, "energy_per_token_j": energy_token,
        "avg_power_w": energy_token * throughput,
        "avg_power_per_gpu_w": energy_token * throughput / num_gpus,
        "tpot_ms": _positive_float(payload, "Avg TPOT (s)", where) * 1000.0,
        "output_throughput_tok_s": throughput,
    }


def build_rows(source: Source, facts: dict[str, ModelFacts]) \
        -> tuple[list[dict[str, Any]], list[str], list[str]]:
    """All rows sorted by the schema key, the files read and the held-out directories skipped."""
    files, skipped = list_data_files(source)
    if not files:
        raise ExtractError(f"{source.describe(DATA_DIR)}: no bs*+tp*+pp*.json files")
    rows = [file_row(source.read_json(f), f, source.describe(f), facts) for f in files]
    key = load_schema()["key"]
    seen: dict[tuple[Any, ...], str] = {}
    for row, name in zip(rows, files, strict=True):
        config = tuple(row[k] for k in key)
        if config in seen:
            raise ExtractError(f"{source.describe(name)}: same configuration as {seen[config]}")
        seen[config] = name
    return sorted(rows, key=lambda r: tuple(r[k] for k in key)), files, skipped


def provenance(source: Source, files: list[str], skipped: list[str],
               rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Where the extract came from and what it holds."""
    per_gpu = {gpu: {"rows": sum(r["gpu_model"] == gpu for r in rows),
                     "models": len({r["model_id"] for r in rows if r["gpu_model"] == gpu})}
               for gpu in sorted({r["gpu_model"] for r in rows})}
    return {
        "source_repository": "https://github.com/ml-energy/leaderboard-v2",
        "source_commit": source.commit(),
        "source_files": files,
        "held_out_not_read": skipped,
        "license": "Apache-2.0 (LICENSE of ml-energy/leaderboard-v2); docs/about.md: 'This "
                   "leaderboard is a research preview intended for non-commercial use only.'",
        "built_by": "scripts/build_mlenergy_v2_extract.py",
        "rows": len(rows),
        "models": len({r["model_id"] for r in rows}),
        "per_gpu": per_gpu,
    }


def main(argv: list[str] | None = None) -> int:
    return public_extract_main(argv, description=__doc__.split("\n\n")[0],
                               leaderboard_help="checkout or git directory of "
                               "ml-energy/leaderboard-v2",
                               default_rev="HEAD", module=sys.modules[__name__],
                               skipped_what="held-out model directories")


if __name__ == "__main__":
    sys.exit(main())
