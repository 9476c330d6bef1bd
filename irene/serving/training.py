"""Fitting the serving predictor to measured configurations, and evaluating it honestly.

* :func:`fit_predictor` fits one :class:`~irene.serving.model.GpuFit` per GPU model present;
* :func:`leave_one_model_out` predicts each model's rows from a fit on the *other* models' rows
  of the same GPU (nothing is tuned per held-out model; the same code and starting point for
  every fold);
* :func:`transfer` fits on one GPU, moves the fit to another GPU's data sheet and calibrates two
  scales (time, energy) on a few configurations measured there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from irene.hardware.gpus import gpu_spec
from irene.serving.data import TASK_PROMPT_TOKENS, Measurement, measured_arrays
from irene.serving.decode import DecodeStep
from irene.serving.model import GpuFit, StepArrays, calibrate, fit_gpu
from irene.serving.predictor import ServingPredictor


def trainable(row: Measurement) -> bool:
    """Whether a row is used for fitting: data-parallel attention (vLLM's DP attention with
    expert parallelism, measured for one checkpoint on B200, 3–4× costlier per token than the
    same model with tensor-parallel attention) is a layout this model does not describe; such
    rows are predicted and reported, never fitted."""
    return row.data_parallel == 1


def trained_on(rows: Sequence[Measurement], steps: Sequence[DecodeStep]) -> dict[str, object]:
    """What a fit saw: row count, models (with their active and total parameters),
    architectures, served formats, tasks, and the ranges of batch (sequences), active and total
    parameters, GPU count and context (tokens)."""
    def span(values: list[float]) -> list[float]:
        return [float(min(values)), float(max(values))]

    params = {r.model_id: [s.structure.active_params(), float(s.structure.total_params())]
              for r, s in zip(rows, steps, strict=True)}
    return {
        "rows": len(rows),
        "models": sorted(params),
        "model_params": dict(sorted(params.items())),
        "architectures": sorted({s.structure.architecture for s in steps}),
        "formats": sorted({s.structure.weight_format for s in steps}),
        "tasks": sorted({r.task for r in rows}),
        "batch": span([r.batch for r in rows]),
        "active_params": span([s.structure.active_params() for s in steps]),
        "total_params": span([float(s.structure.total_params()) for s in steps]),
        "gpus": span([float(r.gpus) for r in rows]),
        "context": span([s.workload.context for s in steps]),
    }


def fit_gpu_rows(rows: Sequence[Measurement], steps: Sequence[DecodeStep],
                 arrays: StepArrays | None = None) -> GpuFit:
    """One GPU model's fit on ``rows`` (all of one GPU)."""
    gpus = {r.gpu for r in rows}
    if len(gpus) != 1:
        raise ValueError(f"rows of one GPU model expected, got {sorted(gpus)}")
    arrays = StepArrays.of(steps) if arrays is None else arrays
    seconds, joules = measured_arrays(rows)
    fit = fit_gpu(gpu_spec(gpus.pop()), arrays, seconds, joules)
    fit.trained_on = trained_on(rows, steps)
    return fit


def fit_predictor(rows: Sequence[Measurement], steps: Sequence[DecodeStep],
                  source: str = "",
                  prompt_tokens: dict[str, float] = TASK_PROMPT_TOKENS) -> ServingPredictor:
    """Fit every GPU model present in ``rows`` (``steps`` are the rows' decode steps)."""
    fits = {}
    for gpu in sorted({r.gpu for r in rows}):
        keep = [i for i, r in enumerate(rows) if r.gpu == gpu and trainable(r)]
        fits[gpu_spec(gpu).name] = fit_gpu_rows([rows[i] for i in keep], [steps[i] for i in keep])
    return ServingPredictor(fits=fits, prompt_tokens=dict(prompt_tokens), source=source)


@dataclass
class Predictions:
    """Predicted and measured J/token (and step seconds) of some rows."""

    rows: list[Measurement]
    joules: np.ndarray
    seconds: np.ndarray

    def errors(self) -> np.ndarray:
        """Absolute percentage errors of energy per token (%)."""
        measured = np.array([r.energy_per_token for r in self.rows])
        return 100.0 * np.abs(self.joules / measured - 1.0)

    def time_errors(self) -> np.ndarray:
        """Absolute percentage errors of throughput (%)."""
        measured = np.array([r.seconds_per_step for r in self.rows])
        return 100.0 * np.abs(measured / self.seconds - 1.0)

    def by_architecture(self, architecture: str) -> np.ndarray:
        """The energy errors of the rows of one architecture (dense, moe, hybrid)."""
        mask = np.array([r.architecture == architecture for r in self.rows], bool)
        return self.errors()[mask] if len(mask) else np.array([])


def leave_one_model_out(rows: Sequence[Measurement], steps: Sequence[DecodeStep],
                        group: Callable[[Measurement], str] | None = None) -> Predictions:
    """Predict each group's rows (``group(row)``; default: each model id) from a fit on the
    other groups' :func:`trainable` rows of the same GPU model (``rows`` may hold several GPU
    models: folds stay within one)."""
    arrays = StepArrays.of(steps)
    joules = np.zeros(len(rows))
    seconds = np.zeros(len(rows))
    gpu_of = np.array([r.gpu for r in rows])
    key = np.array([(group or _model_id)(r) for r in rows])
    usable = np.array([trainable(r) for r in rows], bool)
    for gpu in sorted(set(gpu_of)):
        for held in sorted(set(key[gpu_of == gpu])):
            test = (gpu_of == gpu) & (key == held)
            train = (gpu_of == gpu) & (key != held) & usable
            if not train.any():
                continue
            t_rows = [r for r, m in zip(rows, train, strict=True) if m]
            seconds_train, joules_train = measured_arrays(t_rows)
            fit = fit_gpu(gpu_spec(gpu), arrays.take(train), seconds_train, joules_train)
            joules[test], seconds[test] = fit.predict(arrays.take(test))
    return Predictions(list(rows), joules, seconds)


def _model_id(row: Measurement) -> str:
    return row.model_id


def transfer(source: GpuFit, target_rows: Sequence[Measurement],
             target_steps: Sequence[DecodeStep], calibration: Sequence[int]) -> Predictions:
    """Move ``source`` to the GPU of ``target_rows``, calibrate it on the rows at indices
    ``calibration``, predict the other rows."""
    arrays = StepArrays.of(target_steps)
    mask = np.zeros(len(target_rows), bool)
    mask[list(calibration)] = True
    calib_rows = [r for r, m in zip(target_rows, mask, strict=True) if m]
    seconds, joules = measured_arrays(calib_rows)
    fit = calibrate(source, arrays.take(mask), seconds, joules, gpu=gpu_spec(target_rows[0].gpu))
    rest = [r for r, m in zip(target_rows, mask, strict=True) if not m]
    j, s = fit.predict(arrays.take(~mask))
    return Predictions(rest, j, s)
