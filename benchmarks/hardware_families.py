"""Family-out evaluation of energy-per-token predictors on the public ML.ENERGY measurements.

    python benchmarks/hardware_families.py [--v3 CSV] [--v2 CSV] [--v1 CSV] [--baselines a,b]

Every fold holds out **one whole family** (``irene.hardware.families``: Llama, Qwen, gpt-oss,
DeepSeek, Mistral, Gemma, ...), never a single checkpoint: a predictor is fitted on the rows of
all other families (every source and GPU together) and predicts the held-out family's rows. The
"GPU left out" cells are stricter: the fit sees neither the held-out family nor any row of the
held-out GPU, which must be predicted from its data sheet.

A predictor is a callable ``fit(rows) -> predict`` with ``predict(rows) -> np.ndarray`` of
J/token (all GPUs of the instance, per output token). The table gives the median and 90th
percentile of the absolute percentage error in each cell:

* v3 (vLLM, 2025) H100 dense / MoE / all, B200 all;
* v2 (vLLM 0.5.4) H100, A100-40GB;
* v1 (eager transformers, batch 1) A100, A40;
* GPU left out: H100, B200, A100 (v2 A100-40GB and v1 A100 together), A40.

Baselines (``BASELINES``):

* ``ecologits``: EcoLogits' published formula (mlco2/ecologits, docs/methodology/llm_inference.md
  and ecologits/impacts/llm.py at commit 5be90dad): energy per output token of one GPU =
  alpha * exp(beta * B) * P_active + gamma, in Wh with P_active in billions, alpha = 1.17e-6,
  beta = -1.12e-2, gamma = 4.05e-5 (fitted by EcoLogits on ML.ENERGY H100 data); times the
  measured GPU count; B = the measured mean batch. No fitting.
* ``ecologits-refit``: the same form refitted (least squares in log space) per GPU and runtime
  to the training folds; an unseen GPU gets the fit of the other GPUs of its runtime (the form
  has no hardware term).
* ``loglinear``: log J/token = runtime + GPU dummies + log P_active + log P_total + log B +
  log GPUs + log output length, slopes per runtime, GPU dummies shared; an unseen GPU's dummy
  is predicted from log memory bandwidth (a line through the seen GPUs' dummies).
* ``loglinear-pooled``: the same with slopes shared by the runtimes.
* ``roofline-tdp``: step time = max(bytes / (G x bandwidth), FLOPs / (G x peak)) per decode step
  (weights as served, touched MoE experts, KV cache at the mean context), energy = G x board
  power x step time / B; no fitting.
* ``roofline-fit``: the same with one fitted power constant per runtime (median ratio in log
  space) instead of the board power.
* ``roofline-loglinear``: log J/token = a + b log(roofline-tdp), a and b fitted per runtime
  and GPU (an unseen GPU: its runtime's line over the other GPUs).

Data-sheet figures: ``DATA_SHEETS`` (dense 16-bit tensor peak; the v1 A100's variant is not
stated: 40 GB SXM figures assumed).
"""

from __future__ import annotations

import argparse
import math
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from irene.hardware.families import UnknownFamily  # noqa: E402
from irene.hardware.families import family as _family  # noqa: E402
from irene.serving.data import MeasurementError, read_csv_rows  # noqa: E402

DEFAULT_V3 = ROOT / "datasets" / "mlenergy-v3" / "llm.csv"
DEFAULT_V2 = ROOT / "datasets" / "mlenergy-v2" / "llm.csv"
DEFAULT_V1 = ROOT / "datasets" / "mlenergy-v1" / "eager.csv"


@dataclass(frozen=True)
class DataSheet:
    """HBM bandwidth (bytes/s), dense 16-bit and fp8 tensor peak (FLOP/s), board power (W)."""

    bandwidth: float
    peak16: float
    peak8: float
    board_w: float


#: NVIDIA data sheets (dense, no sparsity). TODO(hw-core): use the irene.hardware GPU table.
DATA_SHEETS = {
    "H100": DataSheet(3.35e12, 989e12, 1979e12, 700.0),  # H100 SXM 80 GB
    "B200": DataSheet(8.0e12, 2250e12, 4500e12, 1000.0),
    "A100": DataSheet(1.555e12, 312e12, 312e12, 400.0),  # A100 SXM4 40 GB
    "A40": DataSheet(0.696e12, 149.7e12, 149.7e12, 300.0),
}
#: the GPU key of each source's gpu_model (v2's A100-SXM4-40GB and v1's A100 are one GPU key)
GPU_KEYS = {"H100": "H100", "B200": "B200", "A100-40GB": "A100", "A100": "A100", "A40": "A40"}
KV_BYTES = 2


class BadInput(ValueError):
    """An extract is not usable: the message names the file, line and field."""


@dataclass(frozen=True)
class Row:
    """One measured configuration, in the fields every predictor may use."""

    source: str  # v3, v2, v1 (the runtime)
    model_id: str
    family: str
    gpu: str  # GPU key of DATA_SHEETS
    architecture: str  # dense, moe, hybrid, encoder-decoder, rnn
    gpus: int
    batch: float  # mean running sequences
    active_params_b: float
    total_params_b: float
    output_len: float
    step_bytes: float  # bytes one decode step reads (instance)
    step_flops: float  # FLOPs of one decode step (instance)
    fp8: bool
    energy: float  # measured J/token (all GPUs)
    task: str = ""  # the source's task (v3: gpqa, lm-arena-chat, sourcegraph-fim; v2/v1: chat...)


# --------------------------------------------------------------------------- reading

def _num(row: dict[str, str], key: str, where: str) -> float:
    try:
        value = float(row[key])
    except (TypeError, ValueError):
        raise BadInput(f"{where}: {key}: not a number: {row.get(key)!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise BadInput(f"{where}: {key}: expected a number > 0, got {row[key]!r}")
    return value


def family_of(model_id: str, where: str = "model_id") -> str:
    """The family of ``model_id`` (irene.hardware.families); BadInput when no rule covers it."""
    try:
        return _family(model_id)
    except UnknownFamily as exc:
        raise BadInput(f"{where}: {exc}") from None


def _read(path: Path, needed: Sequence[str]) -> list[dict[str, str]]:
    try:
        return read_csv_rows(path, needed)
    except MeasurementError as exc:
        raise BadInput(str(exc)) from None


def _gpu(row: dict[str, str], where: str) -> str:
    if row["gpu_model"] not in GPU_KEYS:
        raise BadInput(f"{where}: gpu_model: no data sheet for {row['gpu_model']!r}")
    return GPU_KEYS[row["gpu_model"]]


def _touched(experts: int, per_token: int, batch: float) -> float:
    """Experts a batch of tokens touches per MoE layer under uniform routing."""
    return experts * (1 - (1 - per_token / experts) ** batch) if experts > 1 else 1.0


def load_v3(path: Path) -> list[Row]:
    """v3 rows; decode-step bytes and FLOPs from the built-in architectures (imports torch)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from serving_baselines import decode_step, structure

    raw = _read(path, ("model_id", "gpu_model", "num_gpus", "avg_batch_size", "architecture",
                       "precision", "activated_params_b", "total_params_b", "output_len_mean",
                       "output_context_mean", "energy_per_token_j"))
    cache: dict[str, object] = {}
    rows = []
    for line, r in enumerate(raw, start=2):
        where = f"{path}:{line}"
        name = r["model_id"]
        if name not in cache:
            try:
                cache[name] = structure(name)
            except KeyError:
                raise BadInput(f"{where}: model_id: no built-in architecture for {name!r}") \
                    from None
        batch = _num(r, "avg_batch_size", where)
        step_bytes, step_flops = decode_step(cache[name], batch,  # type: ignore[arg-type]
                                             float(r["output_context_mean"]))
        rows.append(Row("v3", name, family_of(name, f"{where}: model_id"), _gpu(r, where),
                        r["architecture"],
                        int(_num(r, "num_gpus", where)), batch,
                        _num(r, "activated_params_b", where), _num(r, "total_params_b", where),
                        _num(r, "output_len_mean", where), step_bytes, step_flops,
                        r["precision"] == "fp8", _num(r, "energy_per_token_j", where),
                        r.get("task", "")))
    return rows


def _table_step(r: dict[str, str], batch: float, context: float, where: str) \
        -> tuple[float, float]:
    """Bytes and FLOPs of one decode step from the v1/v2 architecture columns (16-bit)."""
    active = _num(r, "active_params_b", where) * 1e9
    experts = int(r.get("experts") or 1)
    per_token = int(r.get("experts_per_token") or 1)
    layers, hidden = int(_num(r, "layers", where)), int(_num(r, "hidden", where))
    expert_params = 3 * hidden * int(_num(r, "intermediate", where)) if experts > 1 else 0.0
    weights = active + layers * expert_params * (_touched(experts, per_token, batch) - per_token)
    kv = batch * float(r["kv_bytes_per_token"]) * context
    heads, head_dim = float(r["heads"]), float(r["head_dim"])
    flops = batch * (2 * active + 4 * layers * heads * head_dim * context)
    return 2 * weights + kv, flops


def load_table_rows(path: Path, source: str) -> list[Row]:
    """v2 (``source='v2'``) or v1 (``'v1'``) rows."""
    batch_field = "avg_batch_size" if source == "v2" else "batch_size"
    arch_field = "architecture" if source == "v2" else "kind"
    raw = _read(path, ("model_id", "family", "gpu_model", "num_gpus", batch_field, arch_field,
                       "active_params_b", "total_params_b", "output_len_mean", "layers",
                       "hidden", "heads", "head_dim", "intermediate", "kv_bytes_per_token",
                       "energy_per_token_j"))
    rows = []
    for line, r in enumerate(raw, start=2):
        where = f"{path}:{line}"
        if family_of(r["model_id"], f"{where}: model_id") != r["family"]:
            raise BadInput(f"{where}: family: {r['family']!r} is not the family mapping's "
                           f"{family_of(r['model_id'])!r}")
        batch = _num(r, batch_field, where)
        out = _num(r, "output_len_mean", where)
        step_bytes, step_flops = _table_step(r, batch, out / 2, where)
        arch = r[arch_field]
        rows.append(Row(source, r["model_id"], r["family"], _gpu(r, where),
                        "dense" if arch == "decoder" else arch, int(_num(r, "num_gpus", where)),
                        batch, _num(r, "active_params_b", where),
                        _num(r, "total_params_b", where), out, step_bytes, step_flops, False,
                        _num(r, "energy_per_token_j", where), r.get("task", "")))
    return rows


# --------------------------------------------------------------------------- folds and cells

Predict = Callable[[Sequence[Row]], np.ndarray]
Fit = Callable[[Sequence[Row]], Predict]


def family_folds(rows: Sequence[Row]) -> list[tuple[str, list[int], list[int]]]:
    """(held-out family, training indices, test indices): one fold per family."""
    families = sorted({r.family for r in rows})
    return [(f, [i for i, r in enumerate(rows) if r.family != f],
             [i for i, r in enumerate(rows) if r.family == f]) for f in families]


def gpu_family_folds(rows: Sequence[Row], gpu: str) -> list[tuple[str, list[int], list[int]]]:
    """Folds that hold out one family *and* every row of ``gpu``; tests that family on ``gpu``."""
    out = []
    for fam in sorted({r.family for r in rows if r.gpu == gpu}):
        train = [i for i, r in enumerate(rows) if r.family != fam and r.gpu != gpu]
        test = [i for i, r in enumerate(rows) if r.family == fam and r.gpu == gpu]
        out.append((fam, train, test))
    return out


def predict_folds(fit: Fit, rows: Sequence[Row],
                  folds: Sequence[tuple[str, list[int], list[int]]]) -> dict[int, float]:
    """Prediction of every test index, each from the fold that holds it out."""
    out: dict[int, float] = {}
    for _, train, test in folds:
        if not train or not test:
            continue
        predict = fit([rows[i] for i in train])
        for i, value in zip(test, predict([rows[i] for i in test]), strict=True):
            out[i] = float(value)
    return out


CELLS: dict[str, Callable[[Row], bool]] = {
    "v3 H100 dense": lambda r: r.source == "v3" and r.gpu == "H100" and r.architecture == "dense",
    "v3 H100 MoE": lambda r: r.source == "v3" and r.gpu == "H100" and r.architecture == "moe",
    "v3 H100 all": lambda r: r.source == "v3" and r.gpu == "H100",
    "v3 B200 all": lambda r: r.source == "v3" and r.gpu == "B200",
    "v2 H100": lambda r: r.source == "v2" and r.gpu == "H100",
    "v2 A100": lambda r: r.source == "v2" and r.gpu == "A100",
    "v1 eager A100": lambda r: r.source == "v1" and r.gpu == "A100",
    "v1 eager A40": lambda r: r.source == "v1" and r.gpu == "A40",
}
LEFT_OUT_GPUS = ("H100", "B200", "A100", "A40")


def errors(pred: dict[int, float], rows: Sequence[Row], keep: Callable[[Row], bool]) \
        -> np.ndarray:
    """Absolute percentage errors (%) of the predicted rows that ``keep`` selects."""
    idx = [i for i in pred if keep(rows[i])]
    return np.array([100 * abs(pred[i] - rows[i].energy) / rows[i].energy for i in idx])


def evaluate(fit: Fit, rows: Sequence[Row]) -> dict[str, np.ndarray]:
    """Errors of every cell: the family-out cells, then one per left-out GPU."""
    pred = predict_folds(fit, rows, family_folds(rows))
    out = {name: errors(pred, rows, keep) for name, keep in CELLS.items()}
    for gpu in LEFT_OUT_GPUS:
        gpred = predict_folds(fit, rows, gpu_family_folds(rows, gpu))
        out[f"GPU left out: {gpu}"] = errors(gpred, rows, lambda r, g=gpu: r.gpu == g)
    return out


def summary(err: np.ndarray) -> str:
    """``median/p90 (n)`` of absolute percentage errors."""
    if err.size == 0:
        return "-"
    return f"{np.median(err):.1f}/{np.percentile(err, 90):.1f} ({err.size})"


# --------------------------------------------------------------------------- baselines

ECOLOGITS = (1.1665273170451914e-06, -0.011205921025579175, 4.052928146734005e-05)  # Wh/token
WH = 3600.0


def _ecologits_per_gpu(rows: Sequence[Row], a: float, b: float, c: float) -> np.ndarray:
    batch = np.array([r.batch for r in rows])
    active = np.array([r.active_params_b for r in rows])
    return (a * np.exp(b * batch) * active + c) * WH


def fit_ecologits(_: Sequence[Row]) -> Predict:
    """EcoLogits' published constants (nothing fitted)."""
    def predict(rows: Sequence[Row]) -> np.ndarray:
        return _ecologits_per_gpu(rows, *ECOLOGITS) * np.array([r.gpus for r in rows])
    return predict


def _refit_ecologits(rows: Sequence[Row]) -> tuple[float, float, float]:
    from scipy.optimize import least_squares

    y = np.log([r.energy / r.gpus for r in rows])

    def residual(theta: np.ndarray) -> np.ndarray:
        a, b, c = math.exp(theta[0]), theta[1], math.exp(theta[2])
        return np.log(_ecologits_per_gpu(rows, a, b, c)) - y

    start = np.array([math.log(ECOLOGITS[0]), ECOLOGITS[1], math.log(ECOLOGITS[2])])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        theta = least_squares(residual, start, bounds=([-40, -1.0, -40], [10, 1.0, 10])).x
    return math.exp(theta[0]), float(theta[1]), math.exp(theta[2])


def fit_ecologits_refit(train: Sequence[Row]) -> Predict:
    """EcoLogits' form, refitted per (runtime, GPU); an unseen GPU gets its runtime's pooled fit."""
    groups = {(r.source, r.gpu) for r in train}
    params = {g: _refit_ecologits([r for r in train if (r.source, r.gpu) == g]) for g in groups}
    pooled = {s: _refit_ecologits([r for r in train if r.source == s])
              for s in {r.source for r in train}}

    def predict(rows: Sequence[Row]) -> np.ndarray:
        out = []
        for r in rows:
            theta = params.get((r.source, r.gpu)) or pooled.get(r.source) or ECOLOGITS
            out.append(float(_ecologits_per_gpu([r], *theta)[0]) * r.gpus)
        return np.array(out)
    return predict


def _loglinear_numeric(r: Row) -> list[float]:
    return [math.log(r.active_params_b), math.log(r.total_params_b), math.log(r.batch),
            math.log(r.gpus), math.log(r.output_len)]


def fit_loglinear(train: Sequence[Row], per_runtime: bool = True) -> Predict:
    """log J/token on runtime and GPU dummies, log params (active, total), log batch, log GPUs
    and log output length; the slopes are fitted per runtime (``per_runtime``) or shared. The
    GPU dummies are shared by the runtimes; an unseen GPU's dummy comes from a line through the
    seen GPUs' dummies against log memory bandwidth (its data sheet)."""
    sources = sorted({r.source for r in train})
    gpus = sorted({r.gpu for r in train})
    width = len(_loglinear_numeric(train[0]))

    def slopes(r: Row) -> list[float]:
        x = _loglinear_numeric(r)
        if not per_runtime:
            return x
        return [v if s == r.source else 0.0 for s in sources for v in x]

    def design(rs: Sequence[Row], gpu_effect: Callable[[Row], list[float]]) -> np.ndarray:
        return np.array([[*(float(r.source == s) for s in sources), *gpu_effect(r), *slopes(r)]
                         for r in rs])

    x = design(train, lambda r: [float(r.gpu == g) for g in gpus[1:]])
    coef, *_ = np.linalg.lstsq(x, np.log([r.energy for r in train]), rcond=None)
    ns = len(sources)
    effects = {gpus[0]: 0.0, **{g: float(coef[ns + k]) for k, g in enumerate(gpus[1:])}}
    if len(effects) > 1:
        bw = np.log([DATA_SHEETS[g].bandwidth for g in effects])
        slope, intercept = np.polyfit(bw, list(effects.values()), 1)
    else:
        slope, intercept = 0.0, 0.0
    runtime_coef = dict(zip(sources, coef[:ns], strict=True))
    rest = coef[ns + len(gpus) - 1:]
    assert rest.size == width * (ns if per_runtime else 1)

    def predict(rows: Sequence[Row]) -> np.ndarray:
        out = []
        for r in rows:
            if r.source not in runtime_coef:
                raise ValueError(f"loglinear: runtime {r.source!r} not in the training rows")
            effect = effects.get(r.gpu)
            if effect is None:
                effect = intercept + slope * math.log(DATA_SHEETS[r.gpu].bandwidth)
            out.append(math.exp(runtime_coef[r.source] + effect
                                + float(np.dot(rest, slopes(r)))))
        return np.array(out)
    return predict


def fit_loglinear_pooled(train: Sequence[Row]) -> Predict:
    """The log-linear fit with slopes shared by the runtimes."""
    return fit_loglinear(train, per_runtime=False)


def roofline_seconds(r: Row) -> float:
    """Roofline time of one decode step of the instance (s) from the GPU's data sheet."""
    sheet = DATA_SHEETS[r.gpu]
    peak = sheet.peak8 if r.fp8 else sheet.peak16
    return max(r.step_bytes / (r.gpus * sheet.bandwidth), r.step_flops / (r.gpus * peak))


def _roofline_tdp(rows: Sequence[Row]) -> np.ndarray:
    return np.array([r.gpus * DATA_SHEETS[r.gpu].board_w * roofline_seconds(r) / r.batch
                     for r in rows])


def fit_roofline_tdp(_: Sequence[Row]) -> Predict:
    """Roofline step time at board power (nothing fitted)."""
    return _roofline_tdp


def fit_roofline_fit(train: Sequence[Row]) -> Predict:
    """Roofline step time times one fitted power constant per runtime (log-space median)."""
    scale = {s: float(np.median(np.log([r.energy for r in train if r.source == s])
                                - np.log(_roofline_tdp([r for r in train if r.source == s]))))
             for s in {r.source for r in train}}

    def predict(rows: Sequence[Row]) -> np.ndarray:
        fallback = float(np.mean(list(scale.values())))
        return _roofline_tdp(rows) * np.exp([scale.get(r.source, fallback) for r in rows])
    return predict


def _line(rows: Sequence[Row]) -> tuple[float, float]:
    """(a, b) of log J/token = a + b log(roofline-tdp J/token) over ``rows``."""
    x = np.log(_roofline_tdp(rows))
    y = np.log([r.energy for r in rows])
    if np.ptp(x) == 0:
        return float(np.mean(y - x)), 1.0
    b, a = np.polyfit(x, y, 1)
    return float(a), float(b)


def fit_roofline_loglinear(train: Sequence[Row]) -> Predict:
    """log J/token = a + b log(roofline energy at board power), fitted per (runtime, GPU); an
    unseen GPU gets its runtime's line (the roofline carries its data sheet)."""
    lines = {g: _line([r for r in train if (r.source, r.gpu) == g])
             for g in {(r.source, r.gpu) for r in train}}
    pooled = {s: _line([r for r in train if r.source == s]) for s in {r.source for r in train}}

    def predict(rows: Sequence[Row]) -> np.ndarray:
        x = np.log(_roofline_tdp(rows))
        out = []
        for r, v in zip(rows, x, strict=True):
            a, b = lines.get((r.source, r.gpu)) or pooled[r.source]
            out.append(math.exp(a + b * v))
        return np.array(out)
    return predict


BASELINES: dict[str, Fit] = {
    "ecologits": fit_ecologits,
    "ecologits-refit": fit_ecologits_refit,
    "loglinear": fit_loglinear,
    "loglinear-pooled": fit_loglinear_pooled,
    "roofline-tdp": fit_roofline_tdp,
    "roofline-fit": fit_roofline_fit,
    "roofline-loglinear": fit_roofline_loglinear,
}


# --------------------------------------------------------------------------- command line

def load_all(v3: Path | None, v2: Path | None, v1: Path | None) -> list[Row]:
    """Rows of the extracts given (None: left out)."""
    rows: list[Row] = []
    if v3 is not None:
        rows += load_v3(v3)
    if v2 is not None:
        rows += load_table_rows(v2, "v2")
    if v1 is not None:
        rows += load_table_rows(v1, "v1")
    return rows


def bar(results: dict[str, dict[str, np.ndarray]], cell: str) -> str:
    """The best median and the best p90 over the predictors in ``cell`` (the bar to beat)."""
    done = [results[n][cell] for n in results if results[n][cell].size]
    if not done:
        return "-"
    return f"{min(np.median(e) for e in done):.1f}/{min(np.percentile(e, 90) for e in done):.1f}"


def print_table(results: dict[str, dict[str, np.ndarray]]) -> None:
    """One line per cell, one column per predictor: median/p90 absolute % error (rows), and the
    best median and best p90 of any predictor."""
    names = list(results)
    cells = list(next(iter(results.values())))
    width = max(len(c) for c in cells) + 2
    print("cell".ljust(width) + "".join(n.rjust(20) for n in names) + "best".rjust(12))
    for cell in cells:
        print(cell.ljust(width) + "".join(summary(results[n][cell]).rjust(20) for n in names)
              + bar(results, cell).rjust(12))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--v3", type=Path, default=DEFAULT_V3, help="ML.ENERGY v3 extract")
    parser.add_argument("--v2", type=Path, default=DEFAULT_V2, help="ML.ENERGY v2 extract")
    parser.add_argument("--v1", type=Path, default=DEFAULT_V1, help="ML.ENERGY v1 extract")
    parser.add_argument("--baselines", default=",".join(BASELINES),
                        help=f"comma-separated, of {', '.join(BASELINES)}")
    args = parser.parse_args(argv)
    chosen = [b.strip() for b in args.baselines.split(",") if b.strip()]
    unknown = [b for b in chosen if b not in BASELINES]
    if unknown or not chosen:
        parser.error(f"--baselines: unknown {', '.join(unknown) or '(none given)'}")
    try:
        rows = load_all(args.v3, args.v2, args.v1)
    except BadInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    counts = {s: sum(r.source == s for r in rows) for s in ("v3", "v2", "v1")}
    print(f"rows: {counts}; families: {', '.join(sorted({r.family for r in rows}))}")
    print("family-out absolute % error of J/token: median/p90 (rows predicted)")
    print_table({name: evaluate(BASELINES[name], rows) for name in chosen})
    return 0


if __name__ == "__main__":
    sys.exit(main())
