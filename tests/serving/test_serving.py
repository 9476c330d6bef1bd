"""The serving estimate: decode-step accounting from a config, the physical predictor, its safe
file, and ``irene estimate --serving``. Tiny Llama-style and MoE configs and a few measurement
rows written here (never the ML.ENERGY extract)."""

from __future__ import annotations

import csv
import json
import math
import shutil
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest

from irene.cli import main
from irene.hardware import params as params_module
from irene.hardware.data import v3_rows
from irene.hardware.fit import Fitted, fit, predict_rows
from irene.hardware.gpus import GPUS
from irene.hardware.model import HardwareParams
from irene.hardware.params import (
    HardwareFile,
    ParamsFormatError,
    load_hardware,
    save_hardware,
    trained_on,
)
from irene.hardware.runtime import RUNTIMES
from irene.hardware.work import work_cost
from irene.serving.data import MeasurementError, read_measurements, steps_of
from irene.serving.decode import Parallelism, Workload, decode_step, module_costs
from irene.serving.estimate import estimate_serving
from irene.serving.structure import expected_distinct_experts, structure_of

LLAMA = {"model_type": "llama", "vocab_size": 256, "hidden_size": 64, "intermediate_size": 160,
         "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2,
         "head_dim": 16, "tie_word_embeddings": False}
MOE = {"model_type": "qwen3_moe", "vocab_size": 256, "hidden_size": 64,
       "intermediate_size": 160, "moe_intermediate_size": 32, "num_hidden_layers": 2,
       "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "num_experts": 16,
       "num_experts_per_tok": 2, "decoder_sparse_step": 1, "mlp_only_layers": [],
       "tie_word_embeddings": False}


def config_of(spec: dict):
    from transformers import AutoConfig

    spec = dict(spec)
    return AutoConfig.for_model(spec.pop("model_type"), **spec)


@pytest.fixture(scope="module")
def structures():
    return {"tiny/llama": structure_of(config_of(LLAMA)),
            "tiny/moe": structure_of(config_of(MOE))}


# --------------------------------------------------------------------------- structure

@pytest.mark.parametrize("spec", [LLAMA, MOE], ids=["llama", "moe"])
def test_analytic_tensors_match_named_parameters_on_the_meta_device(spec):
    import torch
    from transformers import AutoModelForCausalLM

    config = config_of(spec)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    real = {n: p.numel() for n, p in model.named_parameters()}
    mine = {t.name: t.numel for t in structure_of(config).tensors}
    assert mine == real


def test_served_format_prices_only_the_matching_weights(structures):
    config = config_of(MOE)
    bf16 = structure_of(config)
    fp8 = structure_of(config, weight_format="fp8", quantized=r"\.experts\.")
    experts = sum(t.numel for t in bf16.tensors if t.module == "experts")
    assert bf16.weight_bytes() == 2 * bf16.total_params()
    assert fp8.weight_bytes() == pytest.approx(bf16.weight_bytes() - experts)
    with pytest.raises(ValueError, match="no weight matches"):
        structure_of(config, weight_format="fp8", quantized=r"nothing_like_this")


def test_expected_distinct_experts():
    assert expected_distinct_experts(128, 8, 1) == pytest.approx(8)
    assert expected_distinct_experts(128, 8, 10_000) == pytest.approx(128)
    assert expected_distinct_experts(16, 2, 4) == pytest.approx(16 * (1 - (1 - 2 / 16) ** 4))


def test_unsupported_config_is_refused():
    from transformers import BertConfig

    with pytest.raises(ValueError, match="encoder: it generates no tokens"):
        structure_of(BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=1,
                                num_attention_heads=2, intermediate_size=64,
                                is_encoder_decoder=True))
    with pytest.raises(ValueError, match="encoder-decoder"):
        structure_of(SimpleNamespace(model_type="t5x", hidden_size=32, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=64,
                                     vocab_size=64, is_encoder_decoder=True))


# --------------------------------------------------------------------------- decode step

def test_kv_cache_and_weights_split_by_tensor_parallelism(structures):
    s = structures["tiny/llama"]
    w = Workload(batch=8, prompt_len=0, output_len=100, context=50)
    one, two, four = (decode_step(s, w, Parallelism(g)) for g in (1, 2, 4))
    kv_per_token = 3 * 2 * 2 * 16 * 2  # layers × (K, V) × KV heads × head dim × bf16
    assert one.total("cache_bytes") == pytest.approx(8 * 50 * kv_per_token)
    layer_weights = one.total("weight_bytes") - one.total("weight_bytes", "embedding") \
        - one.total("weight_bytes", "norms")
    assert two.total("weight_bytes") - two.total("weight_bytes", "embedding") \
        - two.total("weight_bytes", "norms") == pytest.approx(layer_weights / 2)
    # 2 KV heads: four GPUs each keep a whole head (the cache is replicated, not split further)
    assert four.total("cache_bytes") == pytest.approx(two.total("cache_bytes"))
    assert one.allreduces == 0 and two.allreduces == 2 * 3
    assert two.allreduce_bytes > 0


def test_moe_reads_only_the_experts_the_batch_touches(structures):
    s = structures["tiny/moe"]
    all_experts = sum(t.numel for t in s.tensors if t.module == "experts") * 2

    def expert_bytes(batch: float) -> float:
        step = decode_step(s, Workload(batch, 0, 100, 10), Parallelism(1))
        return step.total("weight_bytes", "experts")

    assert expert_bytes(1) == pytest.approx(all_experts * 2 / 16)
    assert expert_bytes(4) == pytest.approx(all_experts * (1 - (1 - 2 / 16) ** 4))
    assert expert_bytes(4) < expert_bytes(64) <= all_experts
    # prompts prefilled in the step touch more experts
    with_prompts = decode_step(s, Workload(4, 500, 50, 10), Parallelism(1))
    assert with_prompts.total("weight_bytes", "experts") > expert_bytes(4)


def test_module_costs_are_per_layer_and_module(structures):
    costs = module_costs(structures["tiny/moe"], Workload(4, 10, 20, 15))
    layers = {c.layer for c in costs}
    assert layers == {-1, 0, 1}
    assert {c.module for c in costs if c.layer == 0} >= {"attention", "experts", "router",
                                                         "norms"}


# --------------------------------------------------------------------------- fitting

#: a known parameter set the synthetic measurements are generated from (not the priors)
TRUE_PARAMS = HardwareParams().with_values(overlap=0.5, byte_share=0.7, busy_share=0.25,
                                           idle_scale=1.3)


def true_model() -> Fitted:
    runtime = replace(RUNTIMES["vllm"], step_overhead_s=3e-3, launch_gap_s=3e-6)
    return Fitted(TRUE_PARAMS, {"vllm": runtime}, {})


def synthetic_rows(path, structures, gpu="H100", model: Fitted | None = None):
    """A few measurement rows written here, their energies and throughputs generated from a
    known hardware model."""
    model = model or true_model()
    layouts = [("tiny/llama", "gpqa", 1, b) for b in (4, 16, 64, 256)] + \
              [("tiny/llama", "lm-arena-chat", 2, b) for b in (8, 32, 128)] + \
              [("tiny/moe", "lm-arena-chat", g, b) for g in (1, 2) for b in (4, 32, 256)]
    fields = ["model_id", "task", "gpu_model", "num_gpus", "data_parallel", "max_num_seqs",
              "architecture", "avg_batch_size", "output_len_mean", "output_context_mean",
              "energy_per_token_j", "avg_power_w", "output_throughput_tok_s"]
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(fields)
        for model_id, task, gpus, batch in layouts:
            row = {"model_id": model_id, "task": task, "gpu_model": gpu, "num_gpus": gpus,
                   "data_parallel": 1, "max_num_seqs": batch,
                   "architecture": structures[model_id].architecture, "avg_batch_size": batch,
                   "output_len_mean": 300.0, "output_context_mean": 160.0,
                   "energy_per_token_j": 1.0, "avg_power_w": 1.0,
                   "output_throughput_tok_s": 1.0}
            m = read_one(row)
            step = steps_of([m], structure=structures.__getitem__)[0]
            cost = work_cost(step.work(), GPUS[gpu], model.params_for(gpu),
                             model.runtime("vllm"))
            row["energy_per_token_j"] = cost.joules_per_token
            row["output_throughput_tok_s"] = batch / cost.seconds
            row["avg_power_w"] = row["energy_per_token_j"] * row["output_throughput_tok_s"]
            writer.writerow([row[f] for f in fields])
    return path


def read_one(row: dict):
    from irene.checks import Checker
    from irene.serving.data import _row

    return _row({k: str(v) for k, v in row.items()}, Checker("test", {}))


def fit_rows(path, structures):
    return v3_rows(path, structure=structures.__getitem__)


def test_fit_reproduces_measurements_generated_by_the_model(tmp_path, structures):
    rows = fit_rows(synthetic_rows(tmp_path / "rows.csv", structures), structures)
    result = fit(rows, starts=1, prior_weight=0.01)
    seconds, joules = predict_rows(result.best, rows)
    measured = np.array([r.joules_per_token for r in rows])
    assert np.max(np.abs(joules / measured - 1)) < 0.05
    assert np.max(np.abs(seconds / np.array([r.seconds_per_step for r in rows]) - 1)) < 0.05
    # the prior fit is farther: the data moved the parameters
    _, prior = predict_rows(Fitted(HardwareParams(), {}, {}), rows)
    assert np.max(np.abs(prior / measured - 1)) > np.max(np.abs(joules / measured - 1))


def test_a_gpu_never_measured_is_predicted_from_its_data_sheet(tmp_path, structures):
    rows = fit_rows(synthetic_rows(tmp_path / "h.csv", structures), structures)
    b200 = fit_rows(synthetic_rows(tmp_path / "b.csv", structures, gpu="B200"), structures)
    result = fit(rows, starts=1, prior_weight=0.01)
    assert "B200" not in result.best.gpu_multipliers
    _, joules = predict_rows(result.best, b200)
    measured = np.array([r.joules_per_token for r in b200])
    # the synthetic B200 shares the H100's dimensionless parameters: its data sheet suffices,
    # up to what the fit gave the H100's own multipliers (one GPU cannot tell them apart)
    assert np.median(np.abs(joules / measured - 1)) < 0.15
    _, prior = predict_rows(Fitted(HardwareParams(), {}, {}), b200)
    assert np.median(np.abs(joules / measured - 1)) < np.median(np.abs(prior / measured - 1))


def test_bad_measurement_rows_name_the_line_and_field(tmp_path, structures):
    path = synthetic_rows(tmp_path / "rows.csv", structures)
    lines = path.read_text().splitlines()
    lines[3] = lines[3].replace("gpqa,H100,1", "gpqa,H100,one")
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(MeasurementError, match=r"rows\.csv:4: num_gpus"):
        read_measurements(path)


# --------------------------------------------------------------------------- the parameter file

def small_hardware(tmp_path, structures) -> HardwareFile:
    rows = fit_rows(synthetic_rows(tmp_path / "rows.csv", structures), structures)
    result = fit(rows, starts=1, prior_weight=0.01)
    return HardwareFile(result.best, trained_on(rows), {"v3": {"name": "synthetic", "rows": 13}},
                        {"commit": "tests"})


def test_parameters_round_trip_through_their_json_file(tmp_path, structures):
    hw = small_hardware(tmp_path, structures)
    save_hardware(hw, tmp_path / "p.json")
    loaded = load_hardware(tmp_path / "p.json")
    rows = fit_rows(tmp_path / "rows.csv", structures)
    assert np.allclose(predict_rows(loaded.fitted, rows)[1], predict_rows(hw.fitted, rows)[1])
    content = loaded.to_dict()
    assert content["license"] == "Apache-2.0" and "Chung" in content["citation"]


@pytest.mark.parametrize("edit, field", [
    (lambda c: c["params"].update(overlap=3.0), "overlap"),
    (lambda c: c["params"]["eff_memory"].pop("matmul"), "eff_memory"),
    (lambda c: c.pop("license"), "license"),
    (lambda c: c["gpu_multipliers"].update(X900={"idle": 1.0}), "X900"),
    (lambda c: c.update(format_version=99), "format_version"),
    (lambda c: c["runtimes"]["vllm"].update(step_overhead_s=-1), "step_overhead_s"),
    (lambda c: c["trained_on"].update({"H100/tensorrt": {"rows": 1, "models": []}}),
     "H100/tensorrt"),
])
def test_a_damaged_parameter_file_is_refused_naming_the_field(tmp_path, structures, edit, field):
    save_hardware(small_hardware(tmp_path, structures), tmp_path / "p.json")
    content = json.loads((tmp_path / "p.json").read_text())
    edit(content)
    (tmp_path / "p.json").write_text(json.dumps(content))
    with pytest.raises(ParamsFormatError, match=field):
        load_hardware(tmp_path / "p.json")


def test_a_damaged_parameter_file_names_the_line(tmp_path, structures, capsys):
    save_hardware(small_hardware(tmp_path, structures), tmp_path / "p.json")
    content = json.loads((tmp_path / "p.json").read_text())
    content["runtimes"]["vllm"]["step_overhead_s"] = "fast"
    text = json.dumps(content, indent=1)
    (tmp_path / "p.json").write_text(text)
    line = next(i for i, row in enumerate(text.splitlines(), start=1) if '"fast"' in row)
    with pytest.raises(ParamsFormatError,
                       match=rf"p\.json:{line}: runtimes\.vllm\.step_overhead_s: must be a "
                             r"finite number from 0 to 1, got str 'fast'"):
        load_hardware(tmp_path / "p.json")
    content = json.loads(json.dumps(small_hardware(tmp_path, structures).to_dict()))
    content["trained_on"][next(iter(content["trained_on"]))] = 3  # was an AttributeError
    (tmp_path / "p.json").write_text(json.dumps(content))
    with pytest.raises(ParamsFormatError, match=r"p\.json:1: trained_on\..*: expected rows"):
        load_hardware(tmp_path / "p.json")


def test_the_shipped_parameters_load_and_a_tampered_copy_is_refused(tmp_path, monkeypatch):
    shipped = load_hardware()  # digest and every field checked
    assert {"H100/vllm", "B200/vllm"} <= set(shipped.trained_on)
    assert shipped.to_dict()["license"] == "Apache-2.0"
    assert set(shipped.data) >= {"v3"}
    copy = tmp_path / "hardware_params.json"
    shutil.copy(params_module.SHIPPED_PATH, copy)
    text = copy.read_text()
    # a plausible edit that passes every range check: only the digest catches it
    edited = text.replace('"overlap": 0.', '"overlap": 0.0', 1)
    assert edited != text
    copy.write_text(edited)
    monkeypatch.setattr(params_module, "SHIPPED_PATH", copy)
    with pytest.raises(ParamsFormatError, match="digest"):
        load_hardware()


# --------------------------------------------------------------------------- the estimate

@pytest.fixture()
def local_configs(tmp_path):
    out = {}
    for name, spec in (("llama", LLAMA), ("moe", MOE)):
        directory = tmp_path / name
        directory.mkdir()
        (directory / "config.json").write_text(json.dumps(spec))
        out[name] = directory
    return out


@pytest.fixture()
def predictor_file(tmp_path, structures):
    path = tmp_path / "hardware.json"
    save_hardware(small_hardware(tmp_path, structures), path)
    return path


def test_estimate_of_a_local_moe_config_sums_its_breakdown(local_configs, predictor_file):
    e = estimate_serving(str(local_configs["moe"]), gpu="H100", num_gpus=2, concurrency=32,
                         prompt_len=100, new_tokens=200, predictor=str(predictor_file),
                         hub=False)
    assert e.architecture == "moe" and e.num_gpus == 2
    assert sum(e.breakdown.values()) == pytest.approx(e.joules_per_token, rel=1e-9)
    assert e.breakdown["experts"] > 0 and e.breakdown["communication"] > 0
    assert e.joules_per_request == pytest.approx(e.joules_per_token * 200)
    assert e.power_w == pytest.approx(e.joules_per_token * e.tokens_per_s)
    per_layer_experts = sum(entry.get("experts", 0.0) for entry in e.per_layer)
    assert per_layer_experts == pytest.approx(e.breakdown["experts"])
    assert "Apache-2.0" == e.provenance["license"]


def test_estimate_warns_outside_the_measured_data(local_configs, predictor_file):
    e = estimate_serving(str(local_configs["llama"]), gpu="H200", num_gpus=1, concurrency=5000,
                         predictor=str(predictor_file), hub=False)
    text = " ".join(e.warnings)
    assert "H200 was not measured" in text
    assert "concurrency 5000" in text and "extrapolating" in text
    near = estimate_serving(str(local_configs["llama"]), gpu="H100", num_gpus=1,
                            concurrency=16, prompt_len=100, new_tokens=120,
                            predictor=str(predictor_file), hub=False)
    assert not any("concurrency" in w for w in near.warnings)
    assert near.distance["model_measured"] is False
    assert near.distance["nearest_measured_model"]["model"] == "tiny/llama"


def test_more_gpus_cost_more_energy_per_token_at_a_small_batch(local_configs, predictor_file):
    one, four = (estimate_serving(str(local_configs["llama"]), gpu="H100", num_gpus=g,
                                  concurrency=4, predictor=str(predictor_file), hub=False)
                 for g in (1, 4))
    assert four.tokens_per_s > 0 and four.joules_per_token > one.joules_per_token


def test_cli_serving_json(local_configs, predictor_file, capsys):
    code = main(["estimate", str(local_configs["moe"]), "--serving", "vllm", "--gpu", "H100",
                 "--num-gpus", "2", "--concurrency", "16", "--prompt-len", "64",
                 "--new-tokens", "128", "--dtype", "fp8", "--serving-predictor",
                 str(predictor_file), "--offline", "--json"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert data["kind"] == "irene-serving-estimate" and data["weight_format"] == "fp8"
    assert data["joules_per_token"] > 0 and math.isfinite(data["tokens_per_s"])
    assert any("fp8 assumed" in n for n in data["notes"])


def test_cli_serving_text(local_configs, predictor_file, capsys):
    assert main(["estimate", str(local_configs["llama"]), "--serving", "vllm", "--gpu", "h100",
                 "--serving-predictor", str(predictor_file), "--offline"]) == 0
    out = capsys.readouterr().out
    assert "energy per output token" in out and "learned from" in out
    assert "shares modelled, total fitted" in out


@pytest.mark.parametrize("extra, message", [
    (["--gpu", "X900"], "unknown GPU"),
    ([], "needs --gpu"),
    (["--gpu", "H100", "--predictor", "dir"], "--predictor"),
    (["--gpu", "H100", "--batch-size", "2"], "--batch-size"),
    (["--gpu", "H100", "--dtype", "float32"], "float32"),
    (["--gpu", "H100", "--num-gpus", "3"], "divide evenly"),
])
def test_cli_serving_errors_exit_2(local_configs, predictor_file, capsys, extra, message):
    code = main(["estimate", str(local_configs["llama"]), "--serving", "vllm",
                 "--serving-predictor", str(predictor_file), "--offline", *extra])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert any(part in err for part in message.split("|")), err


def test_cli_serving_refuses_a_damaged_predictor_and_an_unknown_model(tmp_path, local_configs,
                                                                      capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["estimate", str(local_configs["llama"]), "--serving", "vllm", "--gpu",
                 "H100", "--serving-predictor", str(bad), "--offline"]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    assert main(["estimate", "no/such-model", "--serving", "vllm", "--gpu", "H100",
                 "--offline"]) == 2


def test_cli_tracing_mode_still_needs_its_options(capsys):
    assert main(["estimate", "gpt2", "--seq-len", "8", "--predictor", "p"]) == 2
    assert "--batch-size" in capsys.readouterr().err
    assert main(["estimate", "gpt2", "--batch-size", "1", "--seq-len", "8", "--predictor",
                 "p", "--gpu", "H100"]) == 2
    # --gpu also names the GPU of the hardware model's estimate, which takes no --predictor
    assert "--gpu apply without --predictor" in capsys.readouterr().err

