"""Public measurements as workloads of the hardware model: ML.ENERGY v3, v2 and v1.

Each measured configuration becomes a :class:`FitRow`: the decode step it runs (the
:class:`~irene.serving.decode.DecodeStep` of its model, workload and GPUs, as a
:class:`~irene.hardware.work.Work`), the GPU and runtime (one per data version: v3 ``vllm``,
v2 ``vllm-0.5.4``, v1 ``eager``), and what was measured (seconds per decode step, joules per
output token). Extracts are read from ``datasets/`` (rebuilt by their scripts); the held-out
check of issue 21 (v2's google/gemma-2 and microsoft/Phi-3 families, every V100 row of v1) is
never extracted, and :func:`check_not_held_out` refuses any such row that reaches a fit.

**Assumed, not measured:** prompt lengths (v3 per task, :data:`irene.serving.data.
TASK_PROMPT_TOKENS`; v2 and v1 in :data:`PROMPT_TOKENS`). v2 and v1 rows carry their
architecture in the extract; their MLP (gated or plain) is the one whose parameter count matches
the published total.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from irene.checks import Checker
from irene.hardware.work import Work

ROOT = Path(__file__).resolve().parents[2]
EXTRACTS = {"v3": ROOT / "datasets" / "mlenergy-v3" / "llm.csv",
            "v2": ROOT / "datasets" / "mlenergy-v2" / "llm.csv",
            "v1": ROOT / "datasets" / "mlenergy-v1" / "eager.csv"}
#: v1's GPU names as data-sheet entries: its A100's variant is not stated; the 40 GB SXM part
#: is assumed (as benchmarks/hardware_families.py does)
V1_GPUS = {"A100": "A100-40GB"}
RUNTIME_OF_VERSION = {"v3": "vllm", "v2": "vllm-0.5.4", "v1": "eager"}
#: prompt tokens assumed per (version, task) for v2 and v1 (short prompts: v2's chat and
#: HumanEval+ code prompts, v1's FastChat conversation template + instruction)
PROMPT_TOKENS = {("v2", "chat"): 250.0, ("v2", "code"): 150.0, ("v1", "chat"): 150.0,
                 ("v1", "chat-concise"): 170.0, ("v1", "instruct"): 120.0,
                 ("v1", "instruct-concise"): 140.0}


class HeldOutRowError(ValueError):
    """A held-out row reached a fit input."""


@dataclass(frozen=True)
class FitRow:
    """One measured configuration as a workload (see the module docstring)."""

    version: str
    model_id: str
    family: str
    task: str
    gpu: str
    runtime: str
    architecture: str
    work: Work
    seconds_per_step: float
    joules_per_token: float
    batch: float
    total_params: float
    active_params: float
    weight_format: str = "bf16"
    context: float = 0.0
    gpus: int = 1
    #: used by fits (False: predicted and reported only, e.g. vLLM's data-parallel attention)
    trainable: bool = True


def check_not_held_out(rows: Sequence[FitRow]) -> None:
    """HeldOutRowError naming the first held-out row among ``rows``."""
    for r in rows:
        if held_out(r.version, r.model_id, r.gpu):
            raise HeldOutRowError(f"{r.version} {r.model_id} on {r.gpu} is held out (issue 21) "
                                  "and must never be fitted")


def held_out(version: str, model_id: str, gpu: str) -> bool:
    """Whether a row belongs to the independent check (v2 gemma-2/Phi-3, v1 V100): the one
    rule of :func:`irene.hardware.families.is_held_out`, applied per version."""
    from irene.hardware.families import is_held_out

    if version == "v2":
        return is_held_out(model_id=model_id)
    return version == "v1" and is_held_out(gpu=gpu)


def family_of(model_id: str) -> str:
    """The family of a model id (the unit of held-out evaluation, :mod:`.families`); an id the
    mapping does not cover (a user's own rows) is a family of its own."""
    from irene.hardware.families import UnknownFamily, family

    try:
        return family(model_id)
    except UnknownFamily:
        return model_id


# --------------------------------------------------------------------------- v3

def v3_rows(path: str | Path = EXTRACTS["v3"], progress: Callable = iter,
            structure: Callable | None = None) -> list[FitRow]:
    """The v3 extract's rows as workloads (rows with vLLM's data-parallel attention, measured
    for one checkpoint on B200 at 3-4x the cost of tensor-parallel attention, are marked not
    ``trainable``: predicted and reported, never fitted); ``structure``: the model id ->
    ModelStructure map (default: the built-in serving checkpoints)."""
    from irene.serving.data import builtin_structure, read_measurements, steps_of

    rows = read_measurements(path)
    steps = steps_of(rows, structure=structure or builtin_structure, progress=progress)
    return [FitRow("v3", r.model_id, family_of(r.model_id), r.task, r.gpu, "vllm",
                   r.architecture, s.work(), r.seconds_per_step, r.energy_per_token, r.batch,
                   float(s.structure.total_params()), s.structure.active_params(),
                   s.structure.weight_format, s.workload.context, r.gpus,
                   trainable=r.data_parallel == 1)
            for r, s in zip(rows, steps, strict=True)]


# --------------------------------------------------------------------------- v2 and v1

def _num(row: dict[str, str], key: str, where: str) -> float:
    """The number >= 0 in column ``key`` of the CSV row at ``where`` (``file:line``)."""
    return Checker(where, {}).number(row.get(key), (key,), parse=float, minimum=0.0)


def config_of_row(row: dict[str, str], where: str) -> SimpleNamespace:
    """A config-like object from an extract row's architecture columns; the MLP is gated or
    plain, whichever matches ``total_params_b`` (the published count) better."""
    n = {k: int(_num(row, k, where)) for k in ("layers", "hidden", "heads", "kv_heads",
                                                 "head_dim", "intermediate", "vocab")}
    experts = int(_num(row, "experts", where)) if row.get("experts") else 1
    top_k = int(_num(row, "experts_per_token", where)) if row.get("experts_per_token") else 1
    tied = str(row.get("tied_embeddings", "")).strip().lower() == "true"
    d, f, L = n["hidden"], n["intermediate"], n["layers"]
    attn = 2 * d * n["heads"] * n["head_dim"] + 2 * d * n["kv_heads"] * n["head_dim"]
    embed = n["vocab"] * d * (1 if tied else 2)
    total = _num(row, "total_params_b", where) * 1e9
    gated = L * (attn + max(experts, 1) * 3 * d * f) + embed
    plain = L * (attn + max(experts, 1) * 2 * d * f) + embed
    moe = experts > 1
    model_type = "mixtral" if moe else (
        "llama" if abs(gated - total) <= abs(plain - total) else "starcoder2")
    return SimpleNamespace(
        model_type=model_type, hidden_size=d, num_hidden_layers=L,
        num_attention_heads=n["heads"], num_key_value_heads=n["kv_heads"],
        head_dim=n["head_dim"], intermediate_size=f, vocab_size=n["vocab"],
        tie_word_embeddings=tied, num_local_experts=experts if moe else None,
        num_experts_per_tok=top_k if moe else None)


def _public_rows(version: str, path: str | Path) -> list[FitRow]:
    from irene.serving.data import read_csv_rows
    from irene.serving.decode import Parallelism, Workload, decode_step
    from irene.serving.structure import UnsupportedArchitecture, structure_of

    path = Path(path)
    needed = ["model_id", "task", "gpu_model", "num_gpus", "output_len_mean",
              "energy_per_token_j", "layers", "hidden", "heads", "kv_heads", "head_dim",
              "intermediate", "vocab", "total_params_b"]
    raw = read_csv_rows(path, needed)
    out: list[FitRow] = []
    structures: dict[str, object] = {}
    for line, r in enumerate(raw, start=2):
        where = f"{path}:{line}"
        model_id, gpu = r["model_id"].strip(), r["gpu_model"].strip()
        gpu = V1_GPUS.get(gpu, gpu) if version == "v1" else gpu
        if held_out(version, model_id, gpu):
            raise HeldOutRowError(f"{where}: {model_id} on {gpu} is held out (issue 21); the "
                                  "extract must not contain it")
        if version == "v1" and r.get("kind", "decoder") != "decoder":
            continue  # encoder-decoder (T5) and RNN (RWKV) rows: no decoder step to count
        if model_id not in structures:
            try:
                structures[model_id] = structure_of(config_of_row(r, where))
            except UnsupportedArchitecture as exc:
                raise ValueError(f"{where}: {exc}") from None
        structure = structures[model_id]
        gpus = int(_num(r, "num_gpus", where))
        output = max(_num(r, "output_len_mean", where), 1.0)
        prompt = PROMPT_TOKENS.get((version, r["task"].strip()))
        if prompt is None:
            raise ValueError(f"{where}: field 'task': no prompt length assumed for "
                             f"{r['task']!r} ({version})")
        if version == "v2":
            batch = max(_num(r, "avg_batch_size", where), 1.0)
            seconds = batch / _num(r, "output_throughput_tok_s", where)
        else:
            batch = float(_num(r, "batch_size", where) or 1.0)
            seconds = batch / _num(r, "throughput_tok_s", where)
        workload = Workload.of_requests(batch, prompt, output)
        step = decode_step(structure, workload, Parallelism(gpus))
        dtype = "fp16"
        out.append(FitRow(version, model_id, family_of(model_id), r["task"].strip(), gpu,
                          RUNTIME_OF_VERSION[version], r.get("architecture", "dense") or "dense",
                          step.work(dtype), seconds, _num(r, "energy_per_token_j", where), batch,
                          float(structure.total_params()), structure.active_params(), "bf16",
                          workload.context, gpus))
    return out


def v2_rows(path: str | Path = EXTRACTS["v2"]) -> list[FitRow]:
    """The v2 extract (vLLM 0.5.4, H100 and A100-40GB) as workloads."""
    return _public_rows("v2", path)


def v1_rows(path: str | Path = EXTRACTS["v1"]) -> list[FitRow]:
    """The v1 extract (HF eager, batch 1, A100 and A40; decoder rows) as workloads."""
    return _public_rows("v1", path)


def all_rows(paths: dict[str, str | Path] | None = None) -> list[FitRow]:
    """Every version's rows whose extract exists (v3 first), held-out rows refused."""
    paths = {**EXTRACTS, **(paths or {})}
    rows: list[FitRow] = []
    for version, loader in (("v3", v3_rows), ("v2", v2_rows), ("v1", v1_rows)):
        if Path(paths[version]).exists():
            rows += loader(paths[version])
    check_not_held_out(rows)
    return rows
