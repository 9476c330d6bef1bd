"""Write ``irene/data/serving_configs.json``: the resolved ``transformers`` config of every
built-in serving model (:data:`irene.tracing.serving_models.SERVING_MODELS`), so that
``irene estimate NAME --serving vllm`` reads it as JSON without torch or transformers.

Usage: ``python scripts/build_serving_configs.py [OUT]`` (default: the shipped file). One JSON
object {model name: ``config.to_dict()``}, keys sorted, LF line ends, strict JSON; the
transformers version stamp is left out so the file depends only on the configs, and so is a field
holding a non-finite number (Nemotron-H's ``time_step_limit``, the Mamba step clamp (0, inf):
no size the estimate reads). Sizes a config class derives in a property instead of storing
(Nemotron-H's ``num_hidden_layers``, from its layer pattern) are added, as ``getattr`` on the
config would give them. ``tests/serving/test_serving_configs.py``
checks the shipped file equals what this script writes now.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

from irene.serving.estimate import SERVING_CONFIGS_PATH

#: keys of ``to_dict()`` that record the writer, not the model
UNSTAMPED = ("transformers_version",)


def _finite(value: Any) -> bool:
    """Whether ``value`` holds no inf/nan at any depth (strict JSON can hold it)."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(_finite(v) for v in value)
    return True


def _unstamped(value: Any) -> Any:
    """``value`` without :data:`UNSTAMPED` keys and non-finite fields, in every nested dict."""
    if isinstance(value, dict):
        return {k: _unstamped(v) for k, v in value.items()
                if k not in UNSTAMPED and _finite(v)}
    if isinstance(value, list):
        return [_unstamped(v) for v in value]
    return value


def _json_ready(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return all(_json_ready(v) for v in value)
    return value is None or isinstance(value, (str, int, float, bool))


def config_dict(config: Any) -> dict[str, Any]:
    """``config.to_dict()`` plus, at every level (``text_config``), the JSON-ready values of the
    properties its own model class defines (those of ``PretrainedConfig`` itself are
    bookkeeping, not sizes); a property the config cannot answer (AttributeError) is absent
    from the config object too."""
    from transformers import PretrainedConfig

    out = config.to_dict()
    for cls in type(config).__mro__:
        if cls is PretrainedConfig or not issubclass(cls, PretrainedConfig):
            break
        for name, member in vars(cls).items():
            if name.startswith("_") or name in out or not isinstance(member, property):
                continue
            try:
                value = getattr(config, name)
            except AttributeError:  # e.g. a removed field that raises on purpose
                continue
            if _json_ready(value):
                out[name] = list(value) if isinstance(value, tuple) else value
    for key, value in vars(config).items():
        if isinstance(value, PretrainedConfig):
            out[key] = config_dict(value)
    return out


def serving_configs() -> dict[str, dict[str, Any]]:
    """{serving built-in name: its config as a JSON-ready dict}, from the registry now."""
    from irene.tracing.registry import BUILTIN_MODELS
    from irene.tracing.serving_models import SERVING_MODELS

    return {name: _unstamped(config_dict(BUILTIN_MODELS[name]()))
            for name in sorted(SERVING_MODELS)}


def serving_configs_text() -> str:
    """The file's exact text (sorted keys, one-space indent, trailing newline)."""
    return json.dumps(serving_configs(), indent=1, sort_keys=True, allow_nan=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0]) if args else SERVING_CONFIGS_PATH
    from irene.files import atomic_write

    with atomic_write(out, "wb") as handle:  # bytes: LF line ends on every platform
        handle.write(serving_configs_text().encode("utf-8"))
    print(f"wrote {out} ({len(serving_configs())} serving models)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
