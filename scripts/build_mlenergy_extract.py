"""Rebuild the ML.ENERGY Benchmark v3 LLM extract (datasets/mlenergy-v3/llm.csv) from its JSON.

Usage::

    python scripts/build_mlenergy_extract.py LEADERBOARD -o datasets/mlenergy-v3/llm.csv

``LEADERBOARD`` is a checkout of https://github.com/ml-energy/leaderboard (a directory holding
``public/data/index.json``) or its git directory (bare or ``.git``; read at ``--rev``, default
``HEAD``). The LLM tasks are those ``index.json`` lists under ``architectures.llm``; every
configuration of ``public/data/models/<org>__<model>__<task>.json`` for those tasks becomes one
row. Columns, units and sources are in ``datasets/mlenergy-v3/schema.json``; rows are sorted by
the schema's key. Beside the CSV, ``<name>.provenance.json`` records the source (commit, files,
row counts). Both outputs are written atomically. Bad input: one line naming the file and the
field, exit code 2. The data are Apache-2.0 (see datasets/mlenergy-v3/README.md); the extract
and its provenance are committed beside the schema.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from irene.tree import atomic_write

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "datasets" / "mlenergy-v3" / "schema.json"
DATA_DIR = "public/data"
ARCHITECTURES = {"Dense Transformer": "dense", "MoE": "moe", "Mamba-Transformer Hybrid": "hybrid"}
PRECISIONS = {"bfloat16": "bf16", "bf16": "bf16", "fp8": "fp8", "mxfp4": "mxfp4"}
GPU_MODELS = ("H100", "B200")
#: the benchmark's stability threshold on avg_batch_size / max_num_seqs (mlenergy_data.records)
MIN_BATCH_UTILIZATION = 0.85
#: energy_per_token_j must equal avg_power_w / output_throughput_tok_s to this relative tolerance
ENERGY_IDENTITY_TOLERANCE = 0.01


class ExtractError(ValueError):
    """Bad or unexpected source data: the message names the file and the field."""


@dataclass(frozen=True)
class Source:
    """Read files of the leaderboard's ``public/data`` from a checkout or a git directory."""

    root: Path
    rev: str | None  # None: a checkout read from the file system

    def read_json(self, relpath: str) -> Any:
        """The parsed JSON file ``relpath`` (relative to the repository root)."""
        text = self._read_text(relpath)
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ExtractError(f"{self.describe(relpath)}: not valid JSON: {exc}") from exc

    def list_files(self, reldir: str) -> list[str]:
        """Paths (relative to the repository root) of the files directly under ``reldir``."""
        if self.rev is None:
            directory = self.root / reldir
            if not directory.is_dir():
                raise ExtractError(f"{directory}: no such directory")
            return sorted(f"{reldir}/{p.name}" for p in directory.iterdir() if p.is_file())
        out = self._git("ls-tree", "--name-only", f"{self.rev}:{reldir}")
        return sorted(f"{reldir}/{name}" for name in out.splitlines() if name)

    def describe(self, relpath: str) -> str:
        """How error messages name ``relpath``."""
        if self.rev is None:
            return str(self.root / relpath)
        return f"{self.root}@{self.rev}:{relpath}"

    def commit(self) -> str | None:
        """The commit read (git directory) or checked out (checkout in a git work tree)."""
        try:
            if self.rev is None:  # only the checkout's own repository, not an enclosing one
                if not (self.root / ".git").exists():
                    return None
                return _run_git(["-C", str(self.root), "rev-parse", "HEAD"]).strip() or None
            return self._git("rev-parse", f"{self.rev}^{{commit}}").strip()
        except ExtractError:
            return None

    def _read_text(self, relpath: str) -> str:
        if self.rev is None:
            path = self.root / relpath
            try:
                return path.read_text(encoding="utf-8")
            except OSError as exc:
                raise ExtractError(f"{path}: cannot read: {exc.strerror or exc}") from exc
        return self._git("show", f"{self.rev}:{relpath}")

    def _git(self, *args: str) -> str:
        return _run_git(["--git-dir", str(self.root), *args])


def _run_git(args: list[str]) -> str:
    try:
        done = subprocess.run(["git", *args], capture_output=True, text=True, check=False)
    except OSError as exc:
        raise ExtractError(f"cannot run git: {exc}") from exc
    if done.returncode != 0:
        first = (done.stderr.strip().splitlines() or ["failed"])[0]
        raise ExtractError(f"git {' '.join(args)}: {first}")
    return done.stdout


def open_source(path: str | Path, rev: str = "HEAD") -> Source:
    """A checkout (``public/data/index.json`` present) or a git directory read at ``rev``."""
    root = Path(path).expanduser()
    if (root / DATA_DIR / "index.json").is_file():
        return Source(root, None)
    if not root.exists():
        raise ExtractError(f"{root}: no such file or directory")
    source = Source(root, rev)
    try:
        source.commit() or _raise(ExtractError("no commit"))
        source._git("cat-file", "-e", f"{rev}:{DATA_DIR}/index.json")
    except ExtractError as exc:
        raise ExtractError(
            f"{root}: neither a leaderboard checkout (no {DATA_DIR}/index.json) nor a git "
            f"directory holding {DATA_DIR}/index.json at {rev}") from exc
    return source


def _raise(exc: Exception) -> Any:
    raise exc


# --------------------------------------------------------------------------- field validation

def _get(obj: Any, key: str, where: str) -> Any:
    if not isinstance(obj, dict):
        raise ExtractError(f"{where}: expected an object, got {type(obj).__name__}")
    if key not in obj or obj[key] is None:
        raise ExtractError(f"{where}.{key}: missing")
    return obj[key]


def _positive_float(obj: Any, key: str, where: str) -> float:
    value = _get(obj, key, where)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ExtractError(f"{where}.{key}: expected a number, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ExtractError(f"{where}.{key}: expected a finite number > 0, got {value!r}")
    return float(value)


def _positive_int(obj: Any, key: str, where: str) -> int:
    value = _get(obj, key, where)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ExtractError(f"{where}.{key}: expected an integer >= 1, got {value!r}")
    return value


def _string(obj: Any, key: str, where: str) -> str:
    value = _get(obj, key, where)
    if not isinstance(value, str) or not value.strip():
        raise ExtractError(f"{where}.{key}: expected a non-empty string, got {value!r}")
    return value


def _choice(obj: Any, key: str, where: str, choices: dict[str, str]) -> str:
    value = _string(obj, key, where)
    if value not in choices:
        raise ExtractError(f"{where}.{key}: unknown value {value!r} "
                           f"(known: {', '.join(sorted(choices))})")
    return choices[value]


# --------------------------------------------------------------------------- output lengths

def histogram_summary(dist: Any, where: str) -> dict[str, float | int]:
    """Summary of an output-length histogram (lengths in tokens).

    ``dist`` is ``{"bins": [edge0, ..., edgeN], "counts": [c1, ..., cN]}`` (numpy.histogram).
    Returns the request count, the median and 90th percentile (interpolated linearly inside the
    bin where the cumulative count crosses them), an upper bound on the longest output, and
    ``output_context_mean`` = E[L²] / (2 E[L]) over bin centres: the mean number of the request's
    own earlier output tokens in the KV cache at a decode step (prompt not included).
    """
    edges = _get(dist, "bins", where)
    counts = _get(dist, "counts", where)
    if not isinstance(edges, list) or not isinstance(counts, list) or not counts:
        raise ExtractError(f"{where}: bins and counts must be non-empty lists")
    if len(edges) != len(counts) + 1:
        raise ExtractError(f"{where}.bins: {len(edges)} edges for {len(counts)} counts "
                           "(expected one more edge than counts)")
    for i, edge in enumerate(edges):
        if isinstance(edge, bool) or not isinstance(edge, (int, float)) \
                or not math.isfinite(edge) or (i and edge < edges[i - 1]):
            raise ExtractError(f"{where}.bins[{i}]: expected finite ascending numbers, "
                               f"got {edge!r}")
    for i, count in enumerate(counts):
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ExtractError(f"{where}.counts[{i}]: expected an integer >= 0, got {count!r}")
    total = sum(counts)
    if total == 0:
        raise ExtractError(f"{where}.counts: all zero (no requests)")
    last = max(i for i, c in enumerate(counts) if c > 0)
    centres = [(edges[i] + edges[i + 1]) / 2 for i in range(len(counts))]
    first_moment = sum(c * x for c, x in zip(counts, centres, strict=True))
    second_moment = sum(c * x * x for c, x in zip(counts, centres, strict=True))
    return {"num_requests": total,
            "output_len_p50": _percentile(edges, counts, 0.5),
            "output_len_p90": _percentile(edges, counts, 0.9),
            "output_len_max": float(edges[last + 1]),
            "output_context_mean": second_moment / (2 * first_moment) if first_moment > 0
            else 0.0}


def _percentile(edges: list[float], counts: list[int], q: float) -> float:
    target = q * sum(counts)
    seen = 0
    for i, count in enumerate(counts):
        if count and seen + count >= target:
            inside = (target - seen) / count
            return float(edges[i] + inside * (edges[i + 1] - edges[i]))
        seen += count
    return float(edges[-1])


# --------------------------------------------------------------------------- rows

def llm_tasks(index: Any, where: str) -> list[str]:
    """The LLM task names listed by ``index.json`` (``architectures.llm``)."""
    tasks = _get(_get(index, "architectures", where), "llm", f"{where}.architectures")
    if not isinstance(tasks, list) or not tasks or not all(isinstance(t, str) for t in tasks):
        raise ExtractError(f"{where}.architectures.llm: expected a non-empty list of task names")
    return sorted(tasks)


def model_file_rows(payload: Any, where: str) -> Iterator[dict[str, Any]]:
    """The extract's rows (without ``replicate``) of one ``models/<model>__<task>.json``."""
    model = {
        "model_id": _string(payload, "model_id", where),
        "task": _string(payload, "task", where),
        "architecture": _choice(payload, "architecture", where, ARCHITECTURES),
        "precision": _choice(payload, "weight_precision", where, PRECISIONS),
        "total_params_b": _positive_float(payload, "total_params_billions", where),
        "activated_params_b": _positive_float(payload, "activated_params_billions", where),
    }
    configurations = _get(payload, "configurations", where)
    if not isinstance(configurations, list) or not configurations:
        raise ExtractError(f"{where}.configurations: expected a non-empty list")
    for i, config in enumerate(configurations):
        yield {**model, **configuration_row(config, f"{where}: configurations[{i}]")}


def configuration_row(config: Any, where: str) -> dict[str, Any]:
    """The measured fields of one configuration, validated (units in schema.json)."""
    parallel = _get(config, "parallelization", where)
    pwhere = f"{where}.parallelization"
    row: dict[str, Any] = {
        "gpu_model": _choice(config, "gpu_model", where, {g: g for g in GPU_MODELS}),
        "num_gpus": _positive_int(config, "num_gpus", where),
        "tensor_parallel": _positive_int(parallel, "tensor_parallel", pwhere),
        "expert_parallel": _positive_int(parallel, "expert_parallel", pwhere),
        "data_parallel": _positive_int(parallel, "data_parallel", pwhere),
        "max_num_seqs": _positive_int(config, "max_num_seqs", where),
        "avg_batch_size": _positive_float(config, "avg_batch_size", where),
        "output_len_mean": _positive_float(config, "avg_output_len", where),
        "energy_per_token_j": _positive_float(config, "energy_per_token_joules", where),
        "energy_per_request_j": _positive_float(config, "energy_per_request_joules", where),
        "avg_power_w": _positive_float(config, "avg_power_watts", where),
        "median_itl_ms": _positive_float(config, "median_itl_ms", where),
        "p90_itl_ms": _positive_float(config, "p90_itl_ms", where),
        "p99_itl_ms": _positive_float(config, "p99_itl_ms", where),
        "output_throughput_tok_s": _positive_float(config, "output_throughput_tokens_per_sec",
                                                   where),
    }
    row.update(histogram_summary(_get(config, "output_length_distribution", where),
                                 f"{where}.output_length_distribution"))
    row["batch_utilization"] = row["avg_batch_size"] / row["max_num_seqs"]
    row["avg_power_per_gpu_w"] = row["avg_power_w"] / row["num_gpus"]
    row["is_stable"] = True
    _check_consistency(row, where)
    return row


def _check_consistency(row: dict[str, Any], where: str) -> None:
    """The identities the schema promises; a failure means the source changed its definitions."""
    implied = row["avg_power_w"] / row["output_throughput_tok_s"]
    if abs(implied / row["energy_per_token_j"] - 1) > ENERGY_IDENTITY_TOLERANCE:
        raise ExtractError(
            f"{where}.energy_per_token_joules: {row['energy_per_token_j']!r} disagrees with "
            f"avg_power_watts / output_throughput_tokens_per_sec = {implied!r}")
    if row["batch_utilization"] < MIN_BATCH_UTILIZATION:
        raise ExtractError(
            f"{where}.avg_batch_size: utilisation {row['batch_utilization']:.3f} of max_num_seqs "
            f"is below the benchmark's stability threshold {MIN_BATCH_UTILIZATION} (the "
            "leaderboard should publish stable runs only)")


def load_schema(path: Path = SCHEMA_PATH) -> dict[str, Any]:
    """The extract's schema (field names in column order, and the sort key)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ExtractError(f"{path}: cannot read the schema: {exc}") from exc


def build_rows(source: Source, progress: Callable[[list[str]], Any] = iter) \
        -> tuple[list[dict[str, Any]], list[str]]:
    """All rows of the LLM tasks, with ``replicate`` set and sorted by the schema's key.

    Returns the rows and the source files read (relative paths).
    """
    index_path = f"{DATA_DIR}/index.json"
    tasks = llm_tasks(source.read_json(index_path), source.describe(index_path))
    files = [f for f in source.list_files(f"{DATA_DIR}/models")
             if f.endswith(".json") and any(f.endswith(f"__{t}.json") for t in tasks)]
    if not files:
        raise ExtractError(f"{source.describe(DATA_DIR + '/models')}: no model files for the "
                           f"LLM tasks {', '.join(tasks)}")
    rows: list[dict[str, Any]] = []
    for relpath in progress(files):
        where = source.describe(relpath)
        payload = source.read_json(relpath)
        file_rows = list(model_file_rows(payload, where))
        if f"{file_rows[0]['model_id'].replace('/', '__')}__{file_rows[0]['task']}.json" \
                != Path(relpath).name:
            raise ExtractError(f"{where}.model_id: {file_rows[0]['model_id']!r} / task "
                               f"{file_rows[0]['task']!r} do not match the file name")
        rows.extend(file_rows)
    return sort_with_replicates(rows, load_schema()["key"]), files


def sort_with_replicates(rows: list[dict[str, Any]], key: list[str]) -> list[dict[str, Any]]:
    """Number repeated runs of one configuration 0, 1, ... (source order); sort by ``key``."""
    seen: Counter[tuple[Any, ...]] = Counter()
    for row in rows:
        config = tuple(row[k] for k in key if k != "replicate")
        row["replicate"] = seen[config]
        seen[config] += 1
    return sorted(rows, key=lambda r: tuple(r[k] for k in key))


# --------------------------------------------------------------------------- writing

def format_value(value: Any) -> str:
    """CSV text of a value: shortest round-trip float, ints as ints, booleans as true/false."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def write_extract(rows: list[dict[str, Any]], out: Path, fields: list[str]) -> None:
    """Write ``rows`` as CSV with ``fields`` as columns, atomically."""
    with atomic_write(out) as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(fields)
        for row in rows:
            writer.writerow([format_value(row[f]) for f in fields])


def provenance(source: Source, files: list[str], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Where the extract came from and what it holds (deterministic for a given source)."""
    per_gpu: dict[str, dict[str, int]] = {}
    for gpu in sorted({r["gpu_model"] for r in rows}):
        sub = [r for r in rows if r["gpu_model"] == gpu]
        per_gpu[gpu] = {"rows": len(sub), "models": len({r["model_id"] for r in sub})}
    return {
        "source_repository": "https://github.com/ml-energy/leaderboard",
        "source_commit": source.commit(),
        "source_files": files,
        "license": "Apache-2.0 (ML.ENERGY Benchmark v3 dataset card, "
                   "github.com/ml-energy/data data_publishing/DATASET_CARD.md)",
        "built_by": "scripts/build_mlenergy_extract.py",
        "rows": len(rows),
        "models": len({r["model_id"] for r in rows}),
        "per_gpu": per_gpu,
    }


def provenance_path(out: Path) -> Path:
    """``llm.csv`` -> ``llm.provenance.json`` beside it."""
    return out.with_name(out.stem + ".provenance.json")


def public_extract_main(argv: list[str] | None, *, description: str, leaderboard_help: str,
                        default_rev: str, module: Any, skipped_what: str) -> int:
    """The command line shared by the v2 and v1 extract scripts: ``LEADERBOARD -o CSV [--rev]
    [--facts]``; ``module`` supplies ``load_schema``, ``open_source``, ``build_rows`` and
    ``provenance``. Writes the CSV and its ``.provenance.json`` atomically; bad input: one line,
    exit 2."""
    from irene.hardware.public_models import FactsError, load_facts

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("leaderboard", help=leaderboard_help)
    parser.add_argument("-o", "--output", required=True, type=Path, help="CSV file to write")
    parser.add_argument("--rev", default=default_rev, help="revision to read from a git directory")
    parser.add_argument("--facts", type=Path, default=None,
                        help="architecture facts CSV (default: datasets/architectures/...)")
    args = parser.parse_args(argv)
    try:
        facts = load_facts(args.facts) if args.facts else load_facts()
        fields = [f["name"] for f in module.load_schema()["fields"]]
        source = module.open_source(args.leaderboard, args.rev)
        rows, files, skipped = module.build_rows(source, facts)
        meta = module.provenance(source, files, skipped, rows)
        write_extract(rows, args.output, fields)
        with atomic_write(args.output.with_name(args.output.stem + ".provenance.json")) as handle:
            json.dump(meta, handle, indent=2)
            handle.write("\n")
    except (ExtractError, FactsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary = ", ".join(f"{g}: {c['rows']} rows / {c['models']} models"
                        for g, c in meta["per_gpu"].items())
    print(f"wrote {len(rows)} rows ({summary}) from {len(files)} files to {args.output}; "
          f"{len(skipped)} {skipped_what} not read")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("leaderboard", help="checkout or git directory of ml-energy/leaderboard")
    parser.add_argument("-o", "--output", required=True, type=Path, help="CSV file to write")
    parser.add_argument("--rev", default="HEAD", help="revision to read from a git directory")
    args = parser.parse_args(argv)
    try:
        from tqdm import tqdm

        schema = load_schema()
        source = open_source(args.leaderboard, args.rev)
        rows, files = build_rows(source, lambda fs: tqdm(fs, desc="model files", unit="file"))
        fields = [f["name"] for f in schema["fields"]]
        write_extract(rows, args.output, fields)
        meta = provenance(source, files, rows)
        with atomic_write(provenance_path(args.output)) as handle:
            json.dump(meta, handle, indent=2)
            handle.write("\n")
    except ExtractError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary = ", ".join(f"{gpu}: {c['rows']} rows / {c['models']} models"
                        for gpu, c in meta["per_gpu"].items())
    print(f"wrote {len(rows)} rows ({summary}) from {len(files)} files to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
