"""The shipped configs of the serving built-ins (irene/data/serving_configs.json): never stale,
the same structure and estimate as the transformers configs they come from, and the built-in
serving estimate runs without importing torch or transformers."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest
from support.paths import ROOT

from irene.serving import estimate as estimate_module
from irene.serving.estimate import (
    SERVING_CONFIGS_PATH,
    ServingEstimateError,
    estimate_serving,
    resolve_structure,
)
from irene.tracing.serving_models import SERVING_MODELS


def _script():
    spec = importlib.util.spec_from_file_location(
        "build_serving_configs", ROOT / "scripts" / "build_serving_configs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shipped_file_is_what_the_script_writes_now(tmp_path):
    script = _script()
    assert SERVING_CONFIGS_PATH.read_bytes() == script.serving_configs_text().encode("utf-8")
    assert sorted(estimate_module.serving_configs()) == sorted(SERVING_MODELS)
    out = tmp_path / "configs.json"
    assert script.main([str(out)]) == 0
    assert out.read_bytes() == SERVING_CONFIGS_PATH.read_bytes()
    assert b"\r\n" not in out.read_bytes()


@pytest.fixture
def transformers_path(monkeypatch):
    """Forces the old path: built-in serving names resolved through transformers configs."""
    def use() -> None:
        monkeypatch.setattr(estimate_module, "serving_configs", dict)
    return use


def _outcome(name: str) -> dict | str:
    """The whole estimate of ``name`` (8 × B200, default workload), or the error it gives."""
    try:
        return estimate_serving(name, gpu="B200", num_gpus=8, hub=False).to_json()
    except ServingEstimateError as exc:
        return f"refused: {exc}"


@pytest.mark.parametrize("name", sorted(SERVING_MODELS))
def test_json_config_gives_the_transformers_structure_and_estimate(name, transformers_path):
    config, _, _ = estimate_module._config(name, hub=False)
    assert type(config).__name__ == "SimpleNamespace"  # the shipped JSON, not transformers
    fast_name, fast, fast_notes = resolve_structure(name, None, hub=False)
    fast_outcome = _outcome(name)
    transformers_path()
    config, _, _ = estimate_module._config(name, hub=False)
    assert type(config).__name__ != "SimpleNamespace"
    slow_name, slow, slow_notes = resolve_structure(name, None, hub=False)
    slow_outcome = _outcome(name)
    assert (fast_name, fast_notes) == (slow_name, slow_notes)
    assert fast.total_params() == slow.total_params() > 0
    assert fast.active_params() == slow.active_params() > 0
    assert fast.num_layers == slow.num_layers > 0
    assert fast.tied_embeddings == slow.tied_embeddings
    assert fast.weight_format == slow.weight_format
    assert fast.quantized == slow.quantized
    assert fast.max_positions == slow.max_positions
    kv = {i: a.kv_bytes_per_token for i, a in fast.attention.items()}
    assert kv == {i: a.kv_bytes_per_token for i, a in slow.attention.items()}
    assert fast == slow  # every tensor, attention and recurrent layer
    assert fast_outcome == slow_outcome
    if isinstance(fast_outcome, dict):
        assert fast_outcome["joules_per_token"] > 0


def test_builtin_serving_estimate_imports_neither_torch_nor_transformers():
    script = (
        "import sys\n"
        "from irene.cli import main\n"
        "rc = main(['estimate', 'meta-llama/Llama-3.1-70B-Instruct', '--serving', 'vllm',"
        " '--gpu', 'H100', '--num-gpus', '4', '--quiet'])\n"
        "assert rc in (0, None), rc\n"
        "heavy = sorted(m for m in ('torch', 'transformers') if m in sys.modules)\n"
        "print('imported:', heavy)\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "imported: []", proc.stdout
    assert float(proc.stdout.split()[0]) > 0  # --quiet prints the J/token first
