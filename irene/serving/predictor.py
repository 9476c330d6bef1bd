"""The shipped serving predictor: fitted parameters per GPU, their provenance, a safe file.

The predictor is one JSON file (no pickle, no code): per GPU model its time and energy
parameters (:mod:`irene.serving.model`) and what it was trained on (models, batch sizes, GPU
counts, contexts, parameter counts), plus the data's name, licence, attribution and citation and
the prompt lengths assumed per task. :func:`load_predictor` reads it with ``json`` from a regular
file of bounded size and checks every field, name and value before use; the file shipped in the
package (``irene/data/serving_vllm.json``) must also match the SHA-256 digest recorded here, so a
modified copy is refused. ``scripts/fit_serving_predictor.py`` writes it from the extract.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from irene.hardware.gpus import GPUS, gpu_spec
from irene.serving.model import ENERGY_PARAMS, TIME_PARAMS, GpuFit, check_parameters

FORMAT_NAME = "irene-serving-predictor"
FORMAT_VERSION = 1
SHIPPED_PATH = Path(__file__).resolve().parents[1] / "data" / "serving_vllm.json"
#: SHA-256 of the shipped predictor file; a file that does not match is refused
SHIPPED_SHA256 = "e35fae609860a91978b302c28dd031aed4d68c074766c21ee55868ca6e186edf"
MAX_BYTES = 1 << 20

DATA_NAME = "ML.ENERGY Benchmark v3 (LLM tasks, vLLM, H100 and B200)"
DATA_LICENSE = "Apache-2.0"
DATA_ATTRIBUTION = ("The ML.ENERGY Benchmark v3, by Jae-Won Chung, Jeff J. Ma, Ruofan Wu, "
                    "Jiachen Liu, Oh Jun Kweon, Yuxuan Xia, Zhiyu Wu and Mosharaf Chowdhury "
                    "(https://ml.energy/leaderboard, https://github.com/ml-energy/benchmark). "
                    "Changes: the predictor's parameters are fitted to the measurements; the "
                    "measurements themselves are not included.")
DATA_CITATION = ("Chung et al., The ML.ENERGY Benchmark: Toward Automated Inference Energy "
                 "Measurement and Optimization, NeurIPS Datasets and Benchmarks 2025")
#: keys of ``trained_on`` and what they hold
TRAINED_ON_RANGES = ("batch", "active_params", "total_params", "gpus", "context")


class PredictorFormatError(ValueError):
    """A predictor file that is missing, damaged or tampered with (the message names it)."""


@dataclass
class ServingPredictor:
    """Fitted GPU models plus provenance (see the module docstring)."""

    fits: dict[str, GpuFit]
    prompt_tokens: dict[str, float]
    data: dict[str, str] = field(default_factory=lambda: {
        "name": DATA_NAME, "license": DATA_LICENSE, "attribution": DATA_ATTRIBUTION,
        "citation": DATA_CITATION})
    source: str = ""  # e.g. the extract's source commit
    path: str = ""  # where it was loaded from

    def fit_for(self, gpu: str) -> GpuFit:
        """The fit of ``gpu`` (KeyError when this GPU has none; see :func:`transfer_fit`)."""
        return self.fits[gpu_spec(gpu).name]

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready content."""
        from irene import __version__

        return {"format": FORMAT_NAME, "format_version": FORMAT_VERSION,
                "created_by": f"irene {__version__}", "data": dict(self.data),
                "source": self.source, "prompt_tokens": dict(self.prompt_tokens),
                "gpus": {name: {"origin": f.origin, "time": f.time, "energy": f.energy,
                                "trained_on": f.trained_on} for name, f in self.fits.items()}}


def save_predictor(predictor: ServingPredictor, path: str | Path) -> str:
    """Write ``predictor`` as JSON atomically; returns the file's SHA-256."""
    from irene.files import atomic_write

    text = json.dumps(predictor.to_dict(), indent=1, sort_keys=True, allow_nan=False) + "\n"
    _parse(json.loads(text), str(path))  # what is written must load
    with atomic_write(path) as handle:
        handle.write(text)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def load_predictor(path: str | Path | None = None) -> ServingPredictor:
    """Read and check a predictor file (default: the shipped one, digest-checked)."""
    from irene.files import read_small_text

    shipped = path is None
    path = Path(SHIPPED_PATH if path is None else path)
    try:
        text = read_small_text(path, limit=MAX_BYTES)
    except FileNotFoundError as exc:
        raise PredictorFormatError(f"{path}: missing (the serving predictor is not installed; "
                                   "rebuild it with scripts/fit_serving_predictor.py)") from exc
    except (OSError, ValueError) as exc:  # not regular, too large, not UTF-8
        raise PredictorFormatError(f"{path}: cannot read ({exc})") from exc
    if shipped and hashlib.sha256(text.encode("utf-8")).hexdigest() != SHIPPED_SHA256:
        raise PredictorFormatError(f"{path}: does not match the digest recorded in "
                                   "irene/serving/predictor.py (modified or damaged); reinstall "
                                   "irene or refit with scripts/fit_serving_predictor.py")
    try:
        content = json.loads(text)
    except ValueError as exc:
        raise PredictorFormatError(f"{path}: not valid JSON ({exc})") from exc
    predictor = _parse(content, str(path))
    predictor.path = str(path)
    return predictor


def _need(obj: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(obj, dict) or key not in obj or not isinstance(obj[key], kind) \
            or isinstance(obj[key], bool):
        raise PredictorFormatError(f"{where}: field {key!r} missing or not a "
                                   f"{getattr(kind, '__name__', 'number')}")
    return obj[key]


def _parse(content: Any, where: str) -> ServingPredictor:
    """A checked :class:`ServingPredictor` from parsed JSON (PredictorFormatError naming the
    field otherwise)."""
    if not isinstance(content, dict) or content.get("format") != FORMAT_NAME:
        raise PredictorFormatError(f"{where}: field 'format' must be {FORMAT_NAME!r}")
    if content.get("format_version") != FORMAT_VERSION:
        raise PredictorFormatError(f"{where}: field 'format_version' must be {FORMAT_VERSION}, "
                                   f"got {content.get('format_version')!r}")
    data = _need(content, "data", dict, where)
    for key in ("name", "license", "attribution", "citation"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            raise PredictorFormatError(f"{where}: data.{key} missing (the data's provenance "
                                       "must travel with the predictor)")
    prompts = _need(content, "prompt_tokens", dict, where)
    for task, value in prompts.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) \
                or not math.isfinite(value) or not 0 <= value <= 1e7:
            raise PredictorFormatError(f"{where}: prompt_tokens.{task} must be a number of "
                                       f"tokens, got {value!r}")
    gpus = _need(content, "gpus", dict, where)
    if not gpus:
        raise PredictorFormatError(f"{where}: field 'gpus' is empty")
    fits: dict[str, GpuFit] = {}
    for name, entry in gpus.items():
        if name not in GPUS:
            raise PredictorFormatError(f"{where}: gpus.{name}: unknown GPU (known: "
                                       f"{', '.join(GPUS)})")
        at = f"{where}: gpus.{name}"
        time = _need(entry, "time", dict, at)
        energy = _need(entry, "energy", dict, at)
        try:
            check_parameters(time, energy, at)
        except ValueError as exc:
            raise PredictorFormatError(str(exc)) from exc
        trained = _need(entry, "trained_on", dict, at)
        _check_trained_on(trained, f"{at}.trained_on")
        fits[name] = GpuFit(gpu=GPUS[name], time={k: float(time[k]) for k in TIME_PARAMS},
                            energy={k: float(energy[k]) for k in ENERGY_PARAMS},
                            origin=str(entry.get("origin", "")), trained_on=trained)
    source = content.get("source", "")
    return ServingPredictor(fits=fits, prompt_tokens={k: float(v) for k, v in prompts.items()},
                            data={k: data[k] for k in ("name", "license", "attribution",
                                                       "citation")},
                            source=source if isinstance(source, str) else "")


def _check_trained_on(trained: dict[str, Any], where: str) -> None:
    for key in TRAINED_ON_RANGES:
        value = trained.get(key)
        if not (isinstance(value, list) and len(value) == 2
                and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                        and math.isfinite(v) and v >= 0 for v in value) and value[0] <= value[1]):
            raise PredictorFormatError(f"{where}.{key}: expected [low, high], got {value!r}")
    for key in ("models", "architectures", "formats", "tasks"):
        value = trained.get(key)
        if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise PredictorFormatError(f"{where}.{key}: expected a list of names")
    params = trained.get("model_params")
    if not isinstance(params, dict) or set(params) != set(trained["models"]) or not all(
            isinstance(v, list) and len(v) == 2 and all(
                isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
                and x > 0 for x in v) for v in params.values()):
        raise PredictorFormatError(f"{where}.model_params: expected {{model: [active, total]}} "
                                   "for every model")
    rows = trained.get("rows")
    if not isinstance(rows, int) or isinstance(rows, bool) or rows < 1:
        raise PredictorFormatError(f"{where}.rows: expected a positive integer")
