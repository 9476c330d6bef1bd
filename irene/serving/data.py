"""Measured serving configurations (the ML.ENERGY v3 extract, or rows in its format) and their
decode-step features.

The extract (``datasets/mlenergy-v3/llm.csv``, rebuilt by ``scripts/build_mlenergy_extract.py``,
never committed) has one row per model × task × GPU × configuration. Only the fields the
predictor needs are read, each checked (bad input: :class:`MeasurementError` naming file, line
and field).

**Prompt lengths are not in the data.** A decode step's context is the request's own earlier
output (``output_context_mean``) plus its prompt, and prompts are prefilled in the same steps; we
state one representative prompt length per task (:data:`TASK_PROMPT_TOKENS`): GPQA's question
with four choices and an instruction (~250 tokens), LMArena conversations whose earlier turns the
benchmark concatenates into the prompt (~750), Sourcegraph fill-in-the-middle code context,
prefix and suffix (~1,500). They are assumptions, not measurements.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from irene.checks import Checker, InputError
from irene.serving.decode import DecodeStep, Parallelism, Workload, decode_step
from irene.serving.structure import ModelStructure

#: the prompt length (tokens) assumed for each ML.ENERGY v3 LLM task (see the module docstring)
TASK_PROMPT_TOKENS: dict[str, float] = {"gpqa": 250.0, "lm-arena-chat": 750.0,
                                        "sourcegraph-fim": 1500.0}
NEEDED = ("model_id", "task", "gpu_model", "num_gpus", "data_parallel", "max_num_seqs",
          "architecture", "avg_batch_size", "output_len_mean", "output_context_mean",
          "energy_per_token_j", "avg_power_w", "output_throughput_tok_s")
_POSITIVE = ("num_gpus", "data_parallel", "max_num_seqs", "avg_batch_size", "output_len_mean",
             "energy_per_token_j", "avg_power_w", "output_throughput_tok_s")


class MeasurementError(InputError):
    """Unusable measurement rows: the message names the file, line and field."""


@dataclass(frozen=True)
class Measurement:
    """One measured configuration: the model served, the workload, the GPUs, and what was
    measured (energy per output token in J, average power of all GPUs in W, output tokens/s)."""

    model_id: str
    task: str
    gpu: str
    gpus: int
    data_parallel: int
    max_num_seqs: int
    architecture: str
    batch: float
    output_len: float
    output_context: float
    energy_per_token: float
    power: float
    throughput: float
    replicate: int = 0

    @property
    def seconds_per_step(self) -> float:
        """Measured seconds per decode step: ``batch`` output tokens per step."""
        return self.batch / self.throughput

    def workload(self, prompt_tokens: dict[str, float] = TASK_PROMPT_TOKENS) -> Workload:
        """The workload of this row (the task's stated prompt length, see the module)."""
        if self.task not in prompt_tokens:
            raise MeasurementError(f"task {self.task!r}: no prompt length stated (known: "
                                   f"{', '.join(prompt_tokens)})")
        prompt = prompt_tokens[self.task]
        return Workload(self.batch, prompt, self.output_len, prompt + self.output_context)

    def parallelism(self) -> Parallelism:
        """The parallel layout (GPUs, data-parallel attention replicas)."""
        return Parallelism(self.gpus, self.data_parallel)


def read_measurements(path: str | Path) -> list[Measurement]:
    """The rows of an extract CSV (see the module docstring)."""
    path = Path(path)
    raw = read_csv_rows(path, NEEDED)
    return [_row(r, Checker(str(path), {(): line}, error=MeasurementError))
            for line, r in enumerate(raw, start=2)]


def read_csv_rows(path: str | Path, needed: Sequence[str]) -> list[dict[str, str]]:
    """The rows of a CSV file with a header that names every column of ``needed``;
    MeasurementError ("file:line: ...") when it cannot be read, lacks a column or has no rows."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            missing = [f for f in needed if f not in (reader.fieldnames or [])]
            if missing:
                raise MeasurementError(f"{path}:1: missing column(s) {', '.join(missing)}")
            raw = list(reader)
    except OSError as exc:
        raise MeasurementError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise MeasurementError(f"{path}: not UTF-8 text") from exc
    if not raw:
        raise MeasurementError(f"{path}: no rows")
    return raw


def _row(r: dict[str, str], check: Checker) -> Measurement:
    values = {k: check.number(r[k], (k,), parse=float, minimum=0.0, positive=k in _POSITIVE)
              for k in NEEDED if k not in ("model_id", "task", "gpu_model", "architecture")}
    for key in ("num_gpus", "data_parallel", "max_num_seqs"):
        if values[key] != int(values[key]):
            raise check.error((key,), f"must be an integer, got {r[key]!r}")
    for key in ("model_id", "task", "gpu_model", "architecture"):
        check.text(r.get(key) or "", (key,))
    if int(values["num_gpus"]) % int(values["data_parallel"]):
        raise check.error(("data_parallel",), f"{r['data_parallel']} does not divide "
                                              f"num_gpus {r['num_gpus']}")
    replicate = r.get("replicate") or "0"
    return Measurement(
        model_id=r["model_id"].strip(), task=r["task"].strip(), gpu=r["gpu_model"].strip(),
        gpus=int(values["num_gpus"]), data_parallel=int(values["data_parallel"]),
        max_num_seqs=int(values["max_num_seqs"]), architecture=r["architecture"].strip(),
        batch=values["avg_batch_size"], output_len=values["output_len_mean"],
        output_context=values["output_context_mean"],
        energy_per_token=values["energy_per_token_j"], power=values["avg_power_w"],
        throughput=values["output_throughput_tok_s"],
        replicate=int(replicate) if replicate.isdigit() else 0)


@lru_cache(maxsize=64)
def builtin_structure(model_id: str) -> ModelStructure:
    """The structure of a built-in serving checkpoint, in its served weight format."""
    from irene.serving.structure import structure_of
    from irene.tracing.serving_models import SERVING_FACTS, SERVING_MODELS

    if model_id not in SERVING_MODELS:
        raise MeasurementError(f"model_id {model_id!r}: no built-in architecture "
                               "(irene/tracing/serving_models.py)")
    facts = SERVING_FACTS[model_id]
    return structure_of(SERVING_MODELS[model_id](), weight_format=facts.weight_format,
                        quantized=facts.quantized)


def steps_of(rows: Iterable[Measurement],
             structure: Callable[[str], ModelStructure] = builtin_structure,
             prompt_tokens: dict[str, float] = TASK_PROMPT_TOKENS,
             progress: Callable[[list[Measurement]], Iterable[Measurement]] = iter) \
        -> list[DecodeStep]:
    """The decode step of each row (its model's structure, workload and parallel layout)."""
    rows = list(rows)
    return [decode_step(structure(r.model_id), r.workload(prompt_tokens), r.parallelism())
            for r in progress(rows)]


