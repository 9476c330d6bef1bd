"""benchmarks/serving_baselines.py: the analytic decode-step features and the fits, on rows the
tests write themselves."""

from __future__ import annotations

import csv
import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from support.paths import ROOT

spec = importlib.util.spec_from_file_location("serving_baselines",
                                              ROOT / "benchmarks" / "serving_baselines.py")
sb = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = sb
spec.loader.exec_module(sb)

LLAMA, GPT_OSS, NEMOTRON = ("meta-llama/Llama-3.1-8B-Instruct", "openai/gpt-oss-20b",
                            "nvidia/NVIDIA-Nemotron-Nano-9B-v2")


@pytest.fixture(scope="module")
def structures():
    return {name: sb.structure(name) for name in (LLAMA, GPT_OSS, NEMOTRON)}


def test_dense_bf16_weights_are_two_bytes_per_parameter(structures):
    llama = structures[LLAMA]
    assert llama.moe_layers == 0 and llama.expert_bytes == 0
    assert llama.dense_weight_bytes == 2 * 8_030_261_248
    # 32 layers x (K and V) x 8 heads x 128 dims x 2 bytes per context token
    assert llama.kv_bytes_per_context_token(1000) == 1000 * 32 * 2 * 8 * 128 * 2
    weights, flops = sb.decode_step(llama, batch=4, context=1000)
    assert weights == llama.dense_weight_bytes + 4 * 1000 * 131072
    assert flops > 4 * 2 * 7e9


def test_moe_reads_only_the_experts_the_batch_touches(structures):
    oss = structures[GPT_OSS]
    assert (oss.moe_layers, oss.experts, oss.experts_per_token) == (24, 32, 4)
    # mxfp4 experts: 4.25 bits per weight, 3 x 2880 x 2880 of them (gate, up, down), + bf16 biases
    assert oss.expert_bytes == 3 * 2880 * 2880 * 4.25 / 8 + 3 * 2880 * 2
    one, _ = sb.decode_step(oss, batch=1, context=0)
    many, _ = sb.decode_step(oss, batch=10_000, context=0)
    assert one == pytest.approx(oss.dense_weight_bytes + 24 * 4 * oss.expert_bytes)
    assert many == pytest.approx(oss.dense_weight_bytes + 24 * 32 * oss.expert_bytes)
    # sliding layers stop growing at the 128-token window: only the 12 full layers do
    grow = oss.kv_bytes_per_context_token(10_000) - oss.kv_bytes_per_context_token(5_000)
    assert grow == 5_000 * 12 * 2 * 8 * 64 * 2


def test_hybrid_state_does_not_grow_with_context(structures):
    nemo = structures[NEMOTRON]
    state = nemo.kv_bytes_per_context_token(0)
    assert state > 100e6  # 27 Mamba layers of fp32 state
    assert nemo.kv_bytes_per_context_token(100) - state == 100 * 4 * 2 * 8 * 128 * 2


def synthetic_rows(structures) -> list:
    """Rows whose energy is an exact log-linear function of bytes per token and GPU count."""
    rows = []
    for name, arch in ((LLAMA, "dense"), (GPT_OSS, "moe"), (NEMOTRON, "hybrid")):
        for gpus in (1, 2):
            for batch in (8.0, 64.0, 256.0):
                step_bytes, _ = sb.decode_step(structures[name], batch, 500.0)
                energy = 3e-7 * (step_bytes / batch) ** 0.7 * gpus ** 0.4
                rows.append(sb.Row(model_id=name, architecture_id=name, task="chat", gpu="H100",
                                   architecture=arch, gpus=gpus, max_num_seqs=int(batch),
                                   batch=batch, energy=energy, active_params=1e9,
                                   bytes_per_token=step_bytes / batch,
                                   gpu_seconds_per_token=1.0))
    return rows


def test_leave_one_model_out_recovers_an_exact_law(structures):
    rows = synthetic_rows(structures)
    errors = sb.leave_one_out(rows, "bytes+gpus", lambda r: r.model_id)
    assert max(max(e) for e in errors.values()) < 1e-6
    coef = sb.fit(rows, "bytes+gpus")
    assert coef[1:] == pytest.approx([0.7, 0.4], abs=1e-9)
    wrong = sb.leave_one_out(rows, "median", lambda r: r.model_id)
    assert np.median(sum(wrong.values(), [])) > 10  # features matter


def test_calibration_fits_scale_and_batch_exponent(structures):
    rows = synthetic_rows(structures)
    coef = sb.fit(rows, "bytes+gpus")
    shifted = [sb.Row(**{**r.__dict__, "energy": 2.0 * r.energy}) for r in rows[:2]]
    scaled = sb.calibrate(coef, shifted, "bytes+gpus", exponent=False)
    assert scaled[0] - coef[0] == pytest.approx(math.log(2.0))
    both = sb.calibrate(coef, shifted, "bytes+gpus", exponent=True)
    assert both[1] == pytest.approx(0.7, abs=1e-6) and both[2] == coef[2]


def write_extract(path: Path, structures, bad: dict | None = None) -> Path:
    fields = list(sb.NEEDED) + ["precision"]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for gpu, scale in (("H100", 1.0), ("B200", 0.6)):
            for name, arch in ((LLAMA, "dense"), (GPT_OSS, "moe"), (NEMOTRON, "hybrid"),
                               ("Qwen/Qwen3-8B", "dense")):
                for seqs in (8, 64, 256):
                    energy = scale * (1.0 if arch == "dense" else 0.5) * seqs ** -0.6
                    row = {"model_id": name, "task": "lm-arena-chat", "gpu_model": gpu,
                           "num_gpus": 1, "max_num_seqs": seqs, "architecture": arch,
                           "avg_batch_size": 0.95 * seqs, "output_context_mean": 400.0,
                           "energy_per_token_j": energy, "precision": "bf16"}
                    writer.writerow(row | (bad or {}))
    return path


def test_main_prints_every_table(tmp_path, capsys, structures):
    path = write_extract(tmp_path / "llm.csv", structures)
    assert sb.main([str(path), "--pairs", "3"]) == 0
    out = capsys.readouterr().out
    assert "H100, leave-one-model-out, pooled fit (4 folds)" in out
    assert "B200, leave-one-architecture-out" in out
    assert out.count("H100 -> B200") == 2 and "roofline+gpus" in out


@pytest.mark.parametrize("bad, message", [
    ({"energy_per_token_j": "x"}, "llm.csv:2: energy_per_token_j: not a number"),
    ({"avg_batch_size": "-1"}, "llm.csv:2: avg_batch_size: expected a positive number"),
    ({"architecture": "rnn"}, "llm.csv:2: architecture: unknown 'rnn'"),
    ({"gpu_model": "A100"}, "llm.csv:2: gpu_model: no data-sheet figures"),
    ({"model_id": "org/unknown"}, "model_id: no built-in architecture for org/unknown"),
])
def test_bad_extract_is_one_line_and_exit_2(tmp_path, capsys, structures, bad, message):
    path = write_extract(tmp_path / "llm.csv", structures, bad)
    assert sb.main([str(path)]) == 2
    assert message in capsys.readouterr().err
