"""``irene estimate MODEL --gpu ...`` without a predictor: every node's energy, time and power
from the hardware model, within physics, with what it rests on and its extrapolations."""

from __future__ import annotations

import json

import pytest

from irene.cli import main
from irene.estimate_gpu import estimate_on_gpu, extrapolation_warnings, hardware_parameters
from irene.hardware import HardwareModel, HardwareParams, gpu_spec, roofline_time, runtime_profile
from irene.hardware.model import idle_power
from irene.hardware.trees import MFLOP, MIB, cost_tree, primitive_class
from irene.tracing import trace_model
from irene.tree import Node, Tree, read_trees

TINY_BERT = {"model_type": "bert", "vocab_size": 128, "hidden_size": 32, "num_hidden_layers": 2,
             "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 64,
             "type_vocab_size": 2}
TINY_GPT2 = {"model_type": "gpt2", "vocab_size": 128, "n_embd": 32, "n_layer": 2, "n_head": 2,
             "n_positions": 64}


@pytest.fixture(scope="module")
def configs(tmp_path_factory):
    root = tmp_path_factory.mktemp("gpu")
    out = {}
    for name, config in (("bert", TINY_BERT), ("gpt2", TINY_GPT2)):
        path = root / name / "config.json"
        path.parent.mkdir()
        path.write_text(json.dumps(config))
        out[name] = path
    return out


def check_physics(tree: Tree, gpu_name: str, dtype: str, runtime: str) -> None:
    """Every leaf: time >= its roofline bound, power <= the board limit, energy > 0; every
    module: exactly the sum of its children (the root: plus the step's idle overhead)."""
    gpu = gpu_spec(gpu_name)
    params, profile, _ = hardware_parameters(gpu, runtime)
    idle = idle_power(gpu, params)
    step_overhead = profile.step_overhead_s
    for node in tree.nodes():
        energy, time_s = node.predicted_energy, node.extra["predicted_time_s"]
        assert energy > 0 and time_s > 0
        assert node.extra["predicted_power_w"] <= gpu.power_limit_w * (1 + 1e-9)
        if node.is_leaf:
            bound = roofline_time(node.features["flops"] * MFLOP,
                                  node.features["mem_bytes"] * MIB, dtype, gpu)
            assert time_s >= bound * (1 - 1e-12)
        else:
            extra = step_overhead if node is tree.root else 0.0
            assert energy == pytest.approx(
                sum(c.predicted_energy for c in node.children) + idle * extra, rel=1e-9)
            assert time_s == pytest.approx(
                sum(c.extra["predicted_time_s"] for c in node.children) + extra, rel=1e-9)


def test_command_prints_every_node_within_physics(configs, tmp_path, capsys):
    out = tmp_path / "a100.jsonl"
    code = main(["estimate", str(configs["bert"]), "--gpu", "A100", "--batch-size", "2",
                 "--seq-len", "16", "--depth", "-1", "--json", "-o", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    data = json.loads(captured.out)
    (tree,) = read_trees(out)
    assert data["gpu"] == gpu_spec("A100").name and data["runtime"] == "eager"
    assert len(data["nodes"]) == len(list(tree.nodes()))  # every node, with --depth -1
    assert data["energy_j"] == pytest.approx(tree.root.predicted_energy)
    assert data["power_w"] <= gpu_spec("A100").power_limit_w
    assert "ML.ENERGY" in data["data"] and "median" in data["measured_error"]
    # an encoder's forward pass on the 80 GB A100: never measured (v1 measured the 40 GB part)
    assert "extrapolates: A100 was never measured (predicted from its data sheet)" in \
        data["warnings"]
    assert any("forward was never measured" in w for w in data["warnings"])
    check_physics(tree, "A100", "fp32", "eager")


def test_text_output_names_the_data_and_the_extrapolation(configs, capsys):
    assert main(["estimate", str(configs["bert"]), "--batch-size", "1", "--seq-len", "8",
                 "--depth", "1"]) == 0
    text = capsys.readouterr().out
    assert "no --gpu given: estimating on H100" in text
    assert "energy J" in text and "time ms" in text and "power W" in text
    assert "data: " in text and "measured error: " in text and "extrapolates" in text
    assert "root.encoder" in text and "root.encoder.layer.0.attention" not in text  # depth 1


def test_power_is_capped_at_the_board_limit_when_work_is_dense():
    """With energy shares at their upper bounds, a dense GEMM on an L4 (72 W) would draw more
    than the board limit: it throttles to the limit, its time stretched beyond the kernel's."""
    gpu = gpu_spec("L4")
    leaf = Node(id="m", scope="root.m", parent_name="root", level=1, instance_type="Linear",
                type="ml", features={"flops": 5e9, "mem_bytes": 1e4})
    root = Node(id="r", scope="root", parent_name="", level=0, instance_type="M",
                type="model", features={"flops": 5e9, "mem_bytes": 1e4}, children=[leaf])
    tree = Tree("synthetic", 1, 1, root)
    params = HardwareParams().with_values(flop_share=2.0, byte_share=2.0)
    costs = cost_tree(tree, HardwareModel(gpu, runtime_profile("compile"), params), "fp16")
    assert costs.of(leaf).throttled and costs.of(leaf).time_s > costs.of(leaf).roofline_s
    assert costs.of(leaf).power_w == pytest.approx(gpu.power_limit_w, rel=1e-6)
    assert costs.of(leaf).time_s >= roofline_time(5e15, 1e4 * MIB, "fp16", gpu)


def test_leaf_classes():
    assert [primitive_class(t) for t in ("Linear", "Conv1D", "MatMul", "LayerNorm",
                                         "LlamaRMSNorm", "Embedding", "GELUActivation", "Add",
                                         "ScaledDotProductAttention", "LinearBackward",
                                         "LayerNormBackward", "AdamWUpdate")] == \
        ["matmul", "matmul", "matmul", "norm", "norm", "embedding", "elementwise",
         "elementwise", "attention", "matmul", "norm", "elementwise"]


def test_gpu_from_a_user_file_and_refusals(configs, tmp_path, capsys):
    spec = tmp_path / "mygpu.json"
    spec.write_text(json.dumps({"name": "My GPU", "tflops": {"fp32": 20, "bf16": 100},
                                "memory_bandwidth_gb_s": 500, "memory_gb": 24,
                                "power_limit_w": 150}))
    assert main(["estimate", str(configs["bert"]), "--gpu-spec", str(spec), "--batch-size", "1",
                 "--seq-len", "8", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["gpu"] == "My GPU" and data["power_w"] <= 150
    assert any("My GPU" in w for w in data["warnings"])
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "Bad", "tflops": {"bf16": 100}, "memory_gb": 24,
                               "power_limit_w": 150}))
    for argv, needle in (
            (["--gpu-spec", str(bad)], "memory_bandwidth_gb_s"),
            (["--gpu", "Voodoo2"], "Voodoo2"),
            (["--runtime", "turbo"], "turbo"),
            (["--dtype", "mxfp4"], "--dtype mxfp4")):
        code = main(["estimate", str(configs["bert"]), "--batch-size", "1", "--seq-len", "8",
                     *argv])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1 and needle in err, (argv, err)


def test_runtime_changes_overheads_not_physics(configs):
    """Eager pays a host dispatch floor per kernel that CUDA graphs do not: a small model takes
    longer eagerly; the energies of both stay within the board limit."""
    times = {}
    for runtime in ("eager", "compile"):
        est = estimate_on_gpu(str(configs["bert"]), 1, 8, gpu="H100", runtime=runtime,
                              hub=False)
        times[runtime] = est.tree.root.extra["predicted_time_s"]
        check_physics(est.tree, "H100", "fp32", runtime)
    assert times["eager"] > times["compile"]


def test_the_same_model_costs_more_on_a_smaller_gpu(configs):
    """The same trace on an L4 (300 GB/s, 72 W) takes longer than on an H100 (3.35 TB/s)."""
    est = {g: estimate_on_gpu(str(configs["gpt2"]), 8, 64, gpu=g, runtime="compile",
                              hub=False).tree for g in ("H100", "L4")}
    assert est["L4"].root.extra["predicted_time_s"] > est["H100"].root.extra["predicted_time_s"]
    assert est["L4"].root.extra["predicted_power_w"] <= gpu_spec("L4").power_limit_w


def test_phases_and_generation(configs, capsys):
    assert main(["estimate", str(configs["gpt2"]), "--gpu", "A100", "--phase", "decode",
                 "--context-len", "16", "--batch-size", "2", "--seq-len", "1", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["phase"] == "decode" and data["energy_j"] > 0
    # a decode step feeds one token per sequence: --seq-len may be left out
    assert main(["estimate", str(configs["gpt2"]), "--gpu", "A100", "--phase", "decode",
                 "--context-len", "16", "--batch-size", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["energy_j"] == data["energy_j"]
    assert main(["estimate", str(configs["gpt2"]), "--gpu", "A100", "--prompt-len", "8",
                 "--new-tokens", "4", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["gpu"] == gpu_spec("A100").name
    prefill = estimate_on_gpu(str(configs["gpt2"]), 1, 8, gpu="A100", phase="prefill",
                              hub=False).tree.root.predicted_energy
    generation = estimate_on_gpu(str(configs["gpt2"]), gpu="A100", prompt_len=8, new_tokens=4,
                                 hub=False).generation
    assert generation.prefill_j == pytest.approx(prefill, rel=1e-9)
    assert generation.total_j > prefill


def test_bert_base_out_of_the_box(capsys):
    """The issue's example: no --predictor, a built-in config with random weights, offline."""
    assert main(["estimate", "bert-base-uncased", "--batch-size", "8", "--seq-len", "128",
                 "--offline", "--json", "--depth", "0"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["model"] == "bert-base-uncased" and data["energy_j"] > 0
    assert 0 < data["power_w"] <= gpu_spec("H100").power_limit_w
    # one call traced from the same config: the same tree of nodes
    tree = trace_model("bert-base-uncased", 8, 128, timing=False, hub=False)
    assert data["nodes"][0]["scope"] == tree.root.scope


def test_warnings_name_each_way_a_request_leaves_what_was_measured():
    """H100 under vLLM was measured on generations (batch ~8-2000, context ~1000-7000): a decode
    step there warns of nothing; a forward pass, an unmeasured GPU or runtime, a batch or a
    context outside those ranges each get their line."""
    h100 = gpu_spec("H100")
    _, vllm, shipped = hardware_parameters(h100, "vllm")
    assert extrapolation_warnings(shipped, h100, vllm, "decode", 64, 2000) == []
    assert extrapolation_warnings(shipped, h100, vllm, "forward", 64, 2000) == \
        ["extrapolates: forward was never measured here"]
    assert extrapolation_warnings(shipped, h100, vllm, "decode", 1, 100000) == \
        ["extrapolates: batch size 1 was never measured here",
         "extrapolates: 100000 tokens was never measured here"]
    l4 = gpu_spec("L4")
    assert "extrapolates: L4 was never measured (predicted from its data sheet)" in \
        extrapolation_warnings(shipped, l4, vllm, "decode", 64, 2000)
    _, compiled, _ = hardware_parameters(h100, "compile")
    assert "extrapolates: the compile runtime was never measured on H100" in \
        extrapolation_warnings(shipped, h100, compiled, "decode", 64, 2000)
    _, _, priors = hardware_parameters(h100, "vllm", fitted=False)
    assert len(extrapolation_warnings(priors, h100, vllm, "decode", 64, 2000)) == 1


def test_a_training_step_costs_forward_backward_and_optimiser(configs):
    """--phase train: the backward GEMMs are priced as GEMMs (not element-wise passes), every
    node within physics, and the step's parts add up to it."""
    est = estimate_on_gpu(str(configs["bert"]), 2, 16, gpu="H100", phase="train", hub=False)
    tree = est.tree
    check_physics(tree, "H100", "fp32", "eager")
    parts = {c.scope: c for c in tree.root.children}
    assert {"forward", "backward", "optimizer"} <= set(parts)
    assert any(w == "extrapolates: train was never measured here" for w in est.warnings)
    backward_gemms = [n for n in tree.nodes() if n.instance_type == "LinearBackward"
                      and n.scope.startswith("backward.")]
    assert backward_gemms
    cost = HardwareModel(est.gpu, est.runtime, hardware_parameters(est.gpu, "eager")[0])
    node = backward_gemms[0]
    as_gemm = cost.primitive(node.features["flops"] * MFLOP, node.features["mem_bytes"] * MIB,
                             dtype="fp32", kind="matmul")
    assert node.predicted_energy == pytest.approx(as_gemm.energy_j, rel=1e-12)
