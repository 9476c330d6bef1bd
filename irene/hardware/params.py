"""The shipped hardware-model parameters: fitted numbers, their provenance, a safe file.

One JSON file (no pickle, no code), ``irene/data/hardware_params.json``, written by
``scripts/fit_hardware.py`` from the public extracts: the shared
:class:`~irene.hardware.model.HardwareParams`, every fitted runtime profile, the per-GPU
multipliers, what each (GPU, runtime) was fitted on, the data's names, versions, licence,
attribution and citation, the fit's commit and the spread of predictions over start points.
:func:`load_hardware` reads it from a regular file of bounded size and checks every field; the
shipped file must match :data:`SHIPPED_SHA256`, so a modified copy is refused.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from irene.checks import Checker, InputError, describe, parse_document
from irene.hardware.fit import GPU_UNKNOWNS, Fitted
from irene.hardware.gpus import GPUS
from irene.hardware.model import HardwareParams
from irene.hardware.runtime import RUNTIMES

FORMAT_NAME = "irene-hardware-params"
FORMAT_VERSION = 1
SHIPPED_PATH = Path(__file__).resolve().parents[1] / "data" / "hardware_params.json"
#: SHA-256 of the shipped parameter file; a file that does not match is refused
SHIPPED_SHA256 = "582fb87536365722029180012c87713ad222a34eb45525635562b9fdf749bf2a"
MAX_BYTES = 1 << 20
LICENSE = "Apache-2.0"
ATTRIBUTION = (
    "The ML.ENERGY Benchmark and Leaderboard, by Jae-Won Chung, Jiachen Liu, Jeff J. Ma, "
    "Ruofan Wu, Oh Jun Kweon, Yuxuan Xia, Zhiyu Wu and Mosharaf Chowdhury "
    "(https://ml.energy/leaderboard; github.com/ml-energy/leaderboard for v3, "
    "github.com/ml-energy/leaderboard-v2 for v2 and, at tag 2023-07-06, v1), Apache-2.0 per "
    "their LICENSE files; the v2 repository calls the leaderboard 'a research preview intended "
    "for non-commercial use only'. Changes: the hardware model's parameters are fitted to the "
    "measurements; the measurements themselves are not included.")
CITATION = ("Chung et al., The ML.ENERGY Benchmark: Toward Automated Inference Energy "
            "Measurement and Optimization, NeurIPS Datasets and Benchmarks 2025")
_RUNTIME_FIELDS = ("dispatch_s", "launch_gap_s", "step_overhead_s")


class ParamsFormatError(InputError):
    """A parameter file that is missing, damaged or tampered with (the message names it)."""


@dataclass
class HardwareFile:
    """A fitted hardware model with its provenance (see the module docstring)."""

    fitted: Fitted
    #: "GPU/runtime" -> what that pair was fitted on (rows, models, ranges)
    trained_on: dict[str, dict[str, Any]] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    fit_info: dict[str, Any] = field(default_factory=dict)
    path: str = ""

    def trained(self, gpu: str, runtime: str) -> dict[str, Any]:
        """What ``gpu`` under ``runtime`` was fitted on ({} when never measured)."""
        return self.trained_on.get(f"{gpu}/{runtime}", {})

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready content."""
        from irene import __version__

        f = self.fitted
        return {"format": FORMAT_NAME, "format_version": FORMAT_VERSION,
                "created_by": f"irene {__version__}", "license": LICENSE,
                "attribution": ATTRIBUTION, "citation": CITATION, "data": self.data,
                "fit": self.fit_info, "params": f.params.to_dict(),
                "runtimes": {name: {**{k: getattr(r, k) for k in _RUNTIME_FIELDS},
                                    "efficiency": dict(r.efficiency)}
                             for name, r in sorted(f.runtimes.items())},
                "gpu_multipliers": f.gpu_multipliers, "trained_on": self.trained_on}


def save_hardware(hw: HardwareFile, path: str | Path) -> str:
    """Write ``hw`` as JSON atomically; returns the file's SHA-256."""
    from irene.files import atomic_write

    text = json.dumps(hw.to_dict(), indent=1, sort_keys=True, allow_nan=False) + "\n"
    _parse(json.loads(text), Checker(str(path), {}, error=ParamsFormatError))  # must load
    with atomic_write(path) as handle:
        handle.write(text)
    return text_digest(text)


def text_digest(text: str) -> str:
    """The SHA-256 of a text file's content with its line ends made ``\\n``: a checkout that
    converts line ends (``core.autocrlf``) does not change it, any other edit does."""
    return hashlib.sha256(text.replace("\r\n", "\n").encode("utf-8")).hexdigest()


def load_hardware(path: str | Path | None = None) -> HardwareFile:
    """Read and check a parameter file (default: the shipped one, digest-checked)."""
    from irene.files import loads_json, read_small_text

    shipped = path is None
    path = Path(SHIPPED_PATH if path is None else path)
    try:
        text = read_small_text(path, limit=MAX_BYTES)
    except FileNotFoundError as exc:
        raise ParamsFormatError(f"{path}: missing (rebuild it with scripts/fit_hardware.py)") \
            from exc
    except (OSError, ValueError) as exc:
        raise ParamsFormatError(f"{path}: cannot read ({exc})") from exc
    if shipped and text_digest(text) != SHIPPED_SHA256:
        raise ParamsFormatError(f"{path}: does not match the digest recorded in "
                                "irene/hardware/params.py (modified or damaged); reinstall "
                                "irene or refit with scripts/fit_hardware.py")
    if shipped:  # digest-checked JSON: its layout (lines) is not needed
        content, check = loads_json(text), Checker(str(path), {}, error=ParamsFormatError)
    else:
        content, check, _ = parse_document(text, str(path), error=ParamsFormatError,
                                           what="hardware parameter file")
    hw = _parse(content, check)
    hw.path = str(path)
    return hw


def _need(obj: dict, path: tuple, kind: type, check: Checker) -> Any:
    value = obj.get(path[-1])
    if not isinstance(value, kind):
        raise check.error(path, f"missing or not a {kind.__name__}")
    return value


def _parse(content: Any, check: Checker) -> HardwareFile:
    """A checked :class:`HardwareFile` from parsed JSON (ParamsFormatError naming the field)."""
    if not isinstance(content, dict) or content.get("format") != FORMAT_NAME:
        raise check.error(("format",), f"must be {FORMAT_NAME!r}")
    if content.get("format_version") != FORMAT_VERSION:
        raise check.error(("format_version",), f"must be {FORMAT_VERSION}")
    for key in ("license", "attribution", "citation"):
        if not isinstance(content.get(key), str) or not content[key].strip():
            raise check.error((key,), "missing (the data's provenance must travel with the "
                                      "parameters)")
    data = _need(content, ("data",), dict, check)
    try:
        params = HardwareParams.from_dict(_need(content, ("params",), dict, check),
                                          check.where(("params",)))
    except ValueError as exc:
        raise ParamsFormatError(str(exc)) from None
    runtimes = {}
    for name, entry in _need(content, ("runtimes",), dict, check).items():
        at = ("runtimes", name)
        if name not in RUNTIMES:
            raise check.error(at, f"unknown runtime (known: {', '.join(RUNTIMES)})")
        if not isinstance(entry, dict):
            raise check.error(at, f"must be a mapping, got {describe(entry)}")
        values = {k: check.number(entry.get(k), at + (k,), minimum=0.0, maximum=1.0)
                  for k in _RUNTIME_FIELDS}
        eff = _need(entry, at + ("efficiency",), dict, check)
        try:
            runtimes[name] = replace(RUNTIMES[name], **values, efficiency={
                k: check.number(v, at + ("efficiency", k), minimum=1e-3, maximum=5.0)
                for k, v in eff.items()})
        except ValueError as exc:
            raise check.error(at, str(exc)) from None
    multipliers: dict[str, dict[str, float]] = {}
    for gpu, entry in _need(content, ("gpu_multipliers",), dict, check).items():
        at = ("gpu_multipliers", gpu)
        if gpu not in GPUS:
            raise check.error(at, f"unknown GPU (known: {', '.join(GPUS)})")
        if not isinstance(entry, dict) or set(entry) - set(GPU_UNKNOWNS):
            raise check.error(at, f"expected some of {', '.join(GPU_UNKNOWNS)}")
        multipliers[gpu] = {k: check.number(v, at + (k,), minimum=GPU_UNKNOWNS[k][1] * 0.999,
                                            maximum=GPU_UNKNOWNS[k][2] * 1.001)
                            for k, v in entry.items()}
    trained = _need(content, ("trained_on",), dict, check)
    for key, entry in trained.items():
        gpu, _, runtime = key.partition("/")
        if gpu not in GPUS or runtime not in RUNTIMES:
            raise check.error(("trained_on", key), "expected 'GPU/runtime' of known names")
        if not isinstance(entry, dict) or not isinstance(entry.get("rows"), int) \
                or isinstance(entry["rows"], bool) or entry["rows"] < 1 \
                or not isinstance(entry.get("models"), list):
            raise check.error(("trained_on", key), "expected rows (a positive count) and models")
    fit_info = content.get("fit", {})
    return HardwareFile(Fitted(params, runtimes, multipliers), trained, data,
                        fit_info if isinstance(fit_info, dict) else {})


def trained_on(rows: list[Any]) -> dict[str, dict[str, Any]]:
    """What each "GPU/runtime" pair of ``rows`` (:class:`~irene.hardware.data.FitRow`) holds:
    rows, models with their active and total parameters, architectures, formats, tasks,
    versions, and the ranges of batch, active and total parameters, GPU count and context."""
    from irene.hardware.gpus import gpu_spec

    out: dict[str, dict[str, Any]] = {}
    keys = sorted({(gpu_spec(r.gpu).name, r.runtime) for r in rows})
    for gpu, runtime in keys:
        mine = [r for r in rows if gpu_spec(r.gpu).name == gpu and r.runtime == runtime]

        def span(values: list[float]) -> list[float]:
            return [float(min(values)), float(max(values))]

        params = {r.model_id: [float(r.active_params), float(r.total_params)] for r in mine}
        out[f"{gpu}/{runtime}"] = {
            "rows": len(mine), "models": sorted(params), "model_params": dict(sorted(
                params.items())),
            "architectures": sorted({r.architecture for r in mine}),
            "formats": sorted({r.weight_format for r in mine}),
            "tasks": sorted({r.task for r in mine}),
            "versions": sorted({r.version for r in mine}),
            "batch": span([r.batch for r in mine]),
            "active_params": span([r.active_params for r in mine]),
            "total_params": span([r.total_params for r in mine]),
            "gpus": span([float(r.gpus) for r in mine]),
            "context": span([r.context for r in mine])}
    return out
