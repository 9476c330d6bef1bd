"""Simple baselines for LLM serving energy per token on the ML.ENERGY v3 extract.

    python benchmarks/serving_baselines.py datasets/mlenergy-v3/llm.csv [--pairs 500]

The bar a learned predictor must beat. Every baseline is a least-squares fit in log space
(log J/token), fitted per GPU model, and evaluated

1. **leave-one-model-out** (LOMO) on the H100 rows and on the B200 rows: for each model id, fit on
   the other models' rows of that GPU, predict the held-out model's rows; and, stricter,
   leave-one-*architecture*-out (LOAO: variants of one architecture, e.g. the -FP8 and
   Thinking/Instruct checkpoints, are held out together);
2. **H100 -> B200 transfer**: fit on all H100 rows, calibrate on two B200 configurations (a
   per-GPU scale, or the scale and one exponent), predict the other B200 rows.

Errors are absolute percentage errors of energy per token: median (MdAPE) and 90th percentile
(P90) over the predicted rows, for dense, MoE and hybrid models separately.

Baselines (features from the built-in architectures, ``irene.tracing.serving_models``):

* ``median``       the median J/token of the training rows (no features);
* ``power``        log E = a + b log N_act + c log B (N_act: parameters used per token, counted
                   from the config; B: average batch size);
* ``power+gpus``   the same + d log G (G: GPUs);
* ``bytes``        log E = a + b log(bytes read per decode step / B): weight bytes as served
                   (bf16 / fp8 / mxfp4; for MoE only the experts that B tokens touch, uniform
                   routing) + KV-cache (and Mamba-state) bytes of B sequences at the mean context;
* ``bytes+gpus``   the same + d log G;
* ``roofline``     log E = a + b log(G * t_step / B), t_step = max(bytes / (G * bandwidth),
                   FLOPs / (G * peak)) with the GPU's data-sheet bandwidth and dense peak;
* ``roofline+gpus`` the same + d log G.

Each is fitted on all architectures together ("pooled") and, for leave-one-model-out, also
within each architecture family (dense / MoE / hybrid fitted separately).

The context of a decode step counts the request's own earlier output tokens only
(``output_context_mean``): prompt lengths are not in the source.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from irene.serving.data import MeasurementError, read_csv_rows

ROOT = Path(__file__).resolve().parents[1]
ARCHITECTURES = ("dense", "moe", "hybrid")
#: data-sheet figures per GPU (SXM): HBM bandwidth (bytes/s), dense bf16 and fp8 peak (FLOP/s)
GPU_SPECS = {"H100": {"bandwidth": 3.35e12, "bf16": 989e12, "fp8": 1979e12},
             "B200": {"bandwidth": 8.0e12, "bf16": 2250e12, "fp8": 4500e12}}
#: KV cache as vLLM stores it by default for these checkpoints: the activation dtype, bf16
KV_BYTES = 2
#: the two B200 configurations of the canonical transfer calibration: one small dense model
#: measured at a small and a large batch, as a user with one GPU would
CANONICAL_CALIBRATION = (("meta-llama/Llama-3.1-8B-Instruct", "lm-arena-chat", 1, 8),
                         ("meta-llama/Llama-3.1-8B-Instruct", "lm-arena-chat", 1, 256))
NEEDED = ("model_id", "task", "gpu_model", "num_gpus", "max_num_seqs", "architecture",
          "avg_batch_size", "output_context_mean", "energy_per_token_j")


class BadInput(ValueError):
    """The extract is not usable: the message names the file, line and field."""


@dataclass(frozen=True)
class Row:
    """One measured configuration with the features the baselines use."""

    model_id: str
    architecture_id: str  # the built-in architecture (factory) the checkpoint uses
    task: str
    gpu: str
    architecture: str
    gpus: int
    max_num_seqs: int
    batch: float
    energy: float  # J/token
    active_params: float
    bytes_per_token: float  # bytes read per decode step / batch
    gpu_seconds_per_token: float  # G * roofline step time / batch


# --------------------------------------------------------------------------- reading

def read_extract(path: Path) -> list[dict[str, str]]:
    """The rows of the extract, checked for the fields the baselines need."""
    try:
        rows = read_csv_rows(path, NEEDED)
    except MeasurementError as exc:
        raise BadInput(str(exc)) from None
    for line, row in enumerate(rows, start=2):
        for field in ("num_gpus", "max_num_seqs", "avg_batch_size", "energy_per_token_j",
                      "output_context_mean"):
            try:
                value = float(row[field])
            except (TypeError, ValueError):
                raise BadInput(f"{path}:{line}: {field}: not a number: {row[field]!r}") from None
            if not math.isfinite(value) or value < 0 or (value == 0 and field !=
                                                          "output_context_mean"):
                raise BadInput(f"{path}:{line}: {field}: expected a positive number, "
                               f"got {row[field]!r}")
        if row["architecture"] not in ARCHITECTURES:
            raise BadInput(f"{path}:{line}: architecture: unknown {row['architecture']!r}")
        if row["gpu_model"] not in GPU_SPECS:
            raise BadInput(f"{path}:{line}: gpu_model: no data-sheet figures for "
                           f"{row['gpu_model']!r}")
    return rows


# --------------------------------------------------------------------------- structure

@dataclass(frozen=True)
class Structure:
    """What one decode step reads and computes, per the architecture and served weight format."""

    dense_weight_bytes: float  # every weight that is not a routed expert (bytes)
    expert_bytes: float  # one routed expert in one MoE layer (bytes)
    moe_layers: int
    experts: int
    experts_per_token: int
    active_matmul_params: float  # parameters multiplied per token, without the input embedding
    active_params: float  # parameters used per token, with the embedding
    kv_bytes_per_context_token: Callable[[float], float]  # bytes of KV per sequence at context c
    attention_flops_per_context_token: Callable[[float], float]  # per token, at context c


def structure(name: str) -> Structure:
    """Analytic decode-step quantities of a built-in serving model (meta device, no memory)."""
    import re

    import torch
    from transformers import AutoModelForCausalLM

    from irene.tracing.registry import load_config
    from irene.tracing.serving_models import (
        FORMAT_BITS,
        ROUTED_EXPERT_PARAM,
        SERVING_FACTS,
        count_parameters,
    )

    config = load_config(name, hub=False)
    facts = SERVING_FACTS[name]
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    quantized = re.compile(facts.quantized) if facts.quantized else None
    low_bytes = FORMAT_BITS[facts.weight_format] / 8
    dense = routed = 0.0
    moe_layers: set[str] = set()
    for pname, param in model.named_parameters():
        size = param.numel() * (low_bytes if quantized and quantized.search(pname) else 2)
        if ROUTED_EXPERT_PARAM.search(pname):
            routed += size
            moe_layers.add(pname.split(".experts.")[0])
        else:
            dense += size
    counts = count_parameters(config)
    experts = max(1, getattr(config, "num_experts", None) or getattr(config, "num_local_experts",
                  None) or getattr(config, "n_routed_experts", None) or 1)
    per_expert = routed / (len(moe_layers) * experts) if moe_layers else 0.0
    kv, attn = _attention_costs(config)
    return Structure(dense_weight_bytes=dense, expert_bytes=per_expert,
                     moe_layers=len(moe_layers), experts=experts,
                     experts_per_token=getattr(config, "num_experts_per_tok", 1) or 1,
                     active_matmul_params=float(counts.active - counts.embedding),
                     active_params=float(counts.active), kv_bytes_per_context_token=kv,
                     attention_flops_per_context_token=attn)


def _attention_costs(config) -> tuple[Callable[[float], float], Callable[[float], float]]:
    """Functions of the context c (tokens): KV-cache (+ recurrent state) bytes one sequence reads
    per decode step, and the attention FLOPs of one token."""
    model_type = config.model_type
    layers = int(getattr(config, "num_hidden_layers", 0))
    heads = config.num_attention_heads
    if model_type == "deepseek_v3":  # MLA, weights absorbed: one latent + rope key per token
        latent = config.kv_lora_rank + config.qk_rope_head_dim
        return (lambda c: layers * latent * KV_BYTES * c,
                lambda c: 2 * layers * heads * (latent + config.kv_lora_rank) * c)
    kv_heads = config.num_key_value_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    types = list(getattr(config, "layer_types", None) or ["full_attention"] * layers)
    window = {"sliding_attention": getattr(config, "sliding_window", None) or 0,
              "chunked_attention": getattr(config, "attention_chunk_size", None) or 0}
    attention = [t for t in types if t.endswith("attention") and t != "linear_attention"]
    state = 0.0
    if model_type == "nemotron_h":  # Mamba-2 layers ("linear_attention"): a fixed-size state
        mamba = sum(t in ("linear_attention", "mamba") for t in types)
        conv_dim = config.mamba_num_heads * config.mamba_head_dim + 2 * config.n_groups * \
            config.ssm_state_size
        ssm_bytes = 4 if str(config.mamba_ssm_cache_dtype) == "float32" else 2
        state = mamba * (config.mamba_num_heads * config.mamba_head_dim * config.ssm_state_size
                         * ssm_bytes + conv_dim * (config.conv_kernel - 1) * KV_BYTES)

    def effective(c: float, kind: str) -> float:
        """Tokens attended to: capped by a sliding window or an attention chunk."""
        return min(c, window[kind]) if window.get(kind) else c

    return (lambda c: state + sum(2 * kv_heads * head_dim * KV_BYTES * effective(c, t)
                                  for t in attention),
            lambda c: sum(4 * heads * head_dim * effective(c, t) for t in attention))


def decode_step(s: Structure, batch: float, context: float) -> tuple[float, float]:
    """Bytes read and FLOPs of one decode step of ``batch`` sequences at ``context`` tokens.

    MoE: with uniform routing, ``batch`` tokens touch E (1 - (1 - k/E)^batch) experts per layer.
    """
    touched = s.experts * (1 - (1 - s.experts_per_token / s.experts) ** batch) \
        if s.moe_layers else 0.0
    weight_bytes = s.dense_weight_bytes + s.moe_layers * touched * s.expert_bytes
    kv_bytes = batch * s.kv_bytes_per_context_token(context)
    flops = batch * (2 * s.active_matmul_params + s.attention_flops_per_context_token(context))
    return weight_bytes + kv_bytes, flops


def featurize(raw: list[dict[str, str]]) -> list[Row]:
    """Rows with the baselines' features; architectures from the built-in registry."""
    from irene.tracing.serving_models import SERVING_MODELS

    unknown = sorted({r["model_id"] for r in raw} - set(SERVING_MODELS))
    if unknown:
        raise BadInput(f"model_id: no built-in architecture for {', '.join(unknown)}")
    cache: dict[str, Structure] = {}
    rows = []
    for r in raw:
        name = r["model_id"]
        if name not in cache:
            cache[name] = structure(name)
        s = cache[name]
        batch, gpus = float(r["avg_batch_size"]), int(r["num_gpus"])
        step_bytes, step_flops = decode_step(s, batch, float(r["output_context_mean"]))
        spec = GPU_SPECS[r["gpu_model"]]
        peak = spec["fp8"] if r.get("precision") == "fp8" else spec["bf16"]
        t_step = max(step_bytes / (gpus * spec["bandwidth"]), step_flops / (gpus * peak))
        rows.append(Row(model_id=name, architecture_id=SERVING_MODELS[name].__name__,
                        task=r["task"], gpu=r["gpu_model"], architecture=r["architecture"],
                        gpus=gpus, max_num_seqs=int(float(r["max_num_seqs"])), batch=batch,
                        energy=float(r["energy_per_token_j"]), active_params=s.active_params,
                        bytes_per_token=step_bytes / batch,
                        gpu_seconds_per_token=gpus * t_step / batch))
    return rows


# --------------------------------------------------------------------------- baselines

#: name -> the log-space regressors of a row (an intercept is always added)
BASELINES: dict[str, Callable[[Row], list[float]]] = {
    "median": lambda r: [],
    "power": lambda r: [math.log(r.active_params), math.log(r.batch)],
    "power+gpus": lambda r: [math.log(r.active_params), math.log(r.batch), math.log(r.gpus)],
    "bytes": lambda r: [math.log(r.bytes_per_token)],
    "bytes+gpus": lambda r: [math.log(r.bytes_per_token), math.log(r.gpus)],
    "roofline": lambda r: [math.log(r.gpu_seconds_per_token)],
    "roofline+gpus": lambda r: [math.log(r.gpu_seconds_per_token), math.log(r.gpus)],
}


def design(rows: Sequence[Row], baseline: str) -> np.ndarray:
    """Design matrix [1, regressors...] of ``rows``."""
    return np.array([[1.0, *BASELINES[baseline](r)] for r in rows])


def fit(rows: Sequence[Row], baseline: str) -> np.ndarray:
    """Coefficients of the log-space fit (the median for ``median``)."""
    y = np.log([r.energy for r in rows])
    if baseline == "median":
        return np.array([float(np.median(y))])
    coef, *_ = np.linalg.lstsq(design(rows, baseline), y, rcond=None)
    return coef


def predict(coef: np.ndarray, rows: Sequence[Row], baseline: str) -> np.ndarray:
    """Predicted J/token."""
    return np.exp(design(rows, baseline) @ coef)


def ape(pred: np.ndarray, rows: Sequence[Row]) -> np.ndarray:
    """Absolute percentage errors (%)."""
    true = np.array([r.energy for r in rows])
    return 100 * np.abs(pred - true) / true


def leave_one_out(rows: Sequence[Row], baseline: str, group: Callable[[Row], str],
                  per_family: bool = False) -> dict[str, list[float]]:
    """Absolute percentage errors of each held-out group, by architecture; with ``per_family``
    the training rows are those of the held-out rows' architecture family only (a family with a
    single group gets no predictions)."""
    errors: dict[str, list[float]] = {a: [] for a in ARCHITECTURES}
    for held in sorted({group(r) for r in rows}):
        test = [r for r in rows if group(r) == held]
        train = [r for r in rows if group(r) != held
                 and (not per_family or r.architecture == test[0].architecture)]
        if not train:
            continue
        coef = fit(train, baseline)
        for r, e in zip(test, ape(predict(coef, test, baseline), test), strict=True):
            errors[r.architecture].append(float(e))
    return errors


#: the coefficient (index in the design matrix) that two configurations of one model at two
#: concurrencies can identify: the one of the regressor that varies with the batch
BATCH_SLOPE = {"power": 2, "power+gpus": 2, "bytes": 1, "bytes+gpus": 1, "roofline": 1,
               "roofline+gpus": 1}


def calibrate(coef: np.ndarray, calib: Sequence[Row], baseline: str, exponent: bool) \
        -> np.ndarray:
    """Re-fit the intercept (a per-GPU scale) on the calibration rows; with ``exponent``, also
    the batch-dependent slope (:data:`BATCH_SLOPE`), the other slopes staying as fitted."""
    coef = coef.copy()
    x = design(calib, baseline)
    y = np.log([r.energy for r in calib])
    if exponent and baseline in BATCH_SLOPE:
        free = [0, BATCH_SLOPE[baseline]]
        fixed = [i for i in range(len(coef)) if i not in free]
        sol, *_ = np.linalg.lstsq(x[:, free], y - x[:, fixed] @ coef[fixed], rcond=None)
        coef[free] = sol
    else:
        coef[0] += float(np.mean(y - x @ coef))
    return coef


def transfer_errors(h100: Sequence[Row], b200: Sequence[Row], baseline: str,
                    calib_keys: Sequence[tuple[str, str, int, int]], exponent: bool) \
        -> dict[str, list[float]]:
    """Fit on H100, calibrate on the B200 rows named by ``calib_keys`` (model, task, GPUs,
    max_num_seqs), errors on the rest."""
    keys = set(calib_keys)
    calib = [r for r in b200 if (r.model_id, r.task, r.gpus, r.max_num_seqs) in keys]
    if len(calib) < 2:
        raise BadInput(f"calibration configurations not in the B200 rows: {sorted(keys)}")
    rest = [r for r in b200 if (r.model_id, r.task, r.gpus, r.max_num_seqs) not in keys]
    coef = calibrate(fit(h100, baseline), calib, baseline, exponent)
    errors: dict[str, list[float]] = {a: [] for a in ARCHITECTURES}
    for r, e in zip(rest, ape(predict(coef, rest, baseline), rest), strict=True):
        errors[r.architecture].append(float(e))
    return errors


# --------------------------------------------------------------------------- printing

def summary(errors: Sequence[float]) -> str:
    """``MdAPE / P90`` (%), or a dash when there are no rows."""
    if not errors:
        return f"{'-':>13}"
    return f"{np.median(errors):5.1f} /{np.percentile(errors, 90):6.1f}"


def print_table(title: str, results: dict[str, dict[str, list[float]]]) -> None:
    """One line per baseline: MdAPE / P90 (%) per architecture (row counts in the header)."""
    first = next(iter(results.values()))
    counts = {a: len(first[a]) for a in ARCHITECTURES}
    print(f"\n{title}")
    print(f"{'baseline':<14}" + "".join(f"  {a + ' (' + str(counts[a]) + ')':>13}"
                                        for a in ARCHITECTURES) + "   (MdAPE / P90, %)")
    for name, errors in results.items():
        print(f"{name:<14}" + "".join(f"  {summary(errors[a])}" for a in ARCHITECTURES))


def random_pairs(b200: Sequence[Row], count: int, seed: int) -> list[tuple[tuple, tuple]]:
    """``count`` pairs of B200 configurations of one model × task × GPU count (a user
    measuring their own model at two concurrencies), drawn with ``seed``."""
    groups: dict[tuple, list[Row]] = {}
    for r in b200:
        groups.setdefault((r.model_id, r.task, r.gpus), []).append(r)
    usable = [g for g in groups.values() if len({r.max_num_seqs for r in g}) >= 2]
    rng = random.Random(seed)
    pairs = []
    for _ in range(count):
        group = rng.choice(usable)
        a, b = rng.sample(sorted({r.max_num_seqs for r in group}), 2)
        model, task, gpus = group[0].model_id, group[0].task, group[0].gpus
        pairs.append(((model, task, gpus, a), (model, task, gpus, b)))
    return pairs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("extract", type=Path, help="datasets/mlenergy-v3/llm.csv")
    parser.add_argument("--pairs", type=int, default=500,
                        help="random B200 calibration pairs for the transfer spread")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        raw = read_extract(args.extract)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rows = featurize(raw)
    except BadInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    by_gpu = {g: [r for r in rows if r.gpu == g] for g in ("H100", "B200")}
    print(f"{args.extract}: {len(rows)} rows; " + ", ".join(
        f"{g}: {len(v)} rows / {len({r.model_id for r in v})} models" for g, v in by_gpu.items()))

    folds = (("leave-one-model-out, pooled fit", lambda r: r.model_id, False),
             ("leave-one-model-out, fit per architecture family", lambda r: r.model_id, True),
             ("leave-one-architecture-out, pooled fit", lambda r: r.architecture_id, False))
    for gpu, subset in by_gpu.items():
        for label, group, per_family in folds:
            results = {b: leave_one_out(subset, b, group, per_family) for b in BASELINES}
            print_table(f"{gpu}, {label} ({len({group(r) for r in subset})} folds)", results)

    h100, b200 = by_gpu["H100"], by_gpu["B200"]
    np.seterr(over="ignore", invalid="ignore")  # a degenerate calibration pair gives inf errors
    for exponent in (False, True):
        how = "scale + batch exponent" if exponent else "per-GPU scale"
        canonical = {b: transfer_errors(h100, b200, b, CANONICAL_CALIBRATION, exponent)
                     for b in BASELINES}
        print_table(f"H100 -> B200, calibrated ({how}) on Llama-3.1-8B-Instruct lm-arena-chat "
                    "at 8 and 256 sequences; errors on the other B200 rows", canonical)
        pairs = random_pairs(b200, args.pairs, args.seed)
        print(f"  over {len(pairs)} random calibration pairs (one model x task, two "
              f"concurrencies; seed {args.seed}): median [10th-90th pct] of the MdAPE, all rows")
        for b in BASELINES:
            mdapes = [float(np.median(sum(transfer_errors(h100, b200, b, p, exponent).values(),
                                          []))) for p in pairs]
            q = np.percentile(mdapes, [10, 50, 90])
            print(f"  {b:<14} {q[1]:6.1f} [{q[0]:.1f}-{q[2]:.1f}]")
    print("\n(fits: numpy least squares in log J/token; GPU data-sheet figures: " + "; ".join(
              f"{g} {s['bandwidth'] / 1e12:g} TB/s, {s['bf16'] / 1e12:g}/{s['fp8'] / 1e12:g} "
              "TFLOP/s bf16/fp8" for g, s in GPU_SPECS.items()) + ")")
    return 0


if __name__ == "__main__":
    sys.exit(main())
