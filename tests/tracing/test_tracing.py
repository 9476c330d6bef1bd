"""The tracer on tiny BERT / GPT-2 / Llama models built in the test (CPU, random weights)."""

from __future__ import annotations

import math

import pytest
import torch
import transformers as T
from support.models import tiny_model

from irene.measure import MeasurementCache, Protocol, SimulatedMeter
from irene.tracing import trace_model
from irene.tracing.build import node_id
from irene.tree import FEATURE_FIELDS, read_trees, write_trees

B, S = 2, 8
FAST = Protocol(warmup=0, runs=1, min_run_seconds=0.0)


def tiny_bert() -> T.PreTrainedModel:
    return tiny_model("bert")


def tiny_gpt2() -> T.PreTrainedModel:
    return tiny_model("gpt2")


def tiny_llama() -> T.PreTrainedModel:
    return tiny_model("llama")


@pytest.fixture(scope="module")
def bert_tree():
    return trace_model(tiny_bert(), B, S, timing=False, model_name="tiny-bert")


def by_scope(tree):
    return {n.scope: n for n in tree.nodes()}


def leaves(node):
    return [n for n in node.walk() if n.is_leaf]


def module_scopes(model):
    return {("root" if not name else f"root.{name}"): m for name, m in model.named_modules()}


# -- parameters ---------------------------------------------------------------------------------

@pytest.mark.parametrize("make", [tiny_bert, tiny_gpt2, tiny_llama])
def test_num_parameters_exact_for_root_and_every_module(make):
    model = make()
    tree = trace_model(model, B, S, timing=False)
    assert tree.root.features["num_parameters"] == sum(p.numel() for p in model.parameters())
    modules = module_scopes(model)
    checked = 0
    for node in tree.nodes():
        if node.scope in modules:
            own = sum(p.numel() for p in modules[node.scope].parameters())
            assert node.features["num_parameters"] == own, node.scope
            checked += 1
        else:  # functional primitive: no parameters of its own here
            assert node.type == "ml" and node.features["num_parameters"] == 0, node.scope
    assert checked > 10


# -- FLOPs --------------------------------------------------------------------------------------

@pytest.mark.parametrize("make", [tiny_bert, tiny_gpt2, tiny_llama])
def test_every_flop_lands_in_exactly_one_leaf(make):
    tree = trace_model(make(), B, S, timing=False)
    root = tree.root.features["flops"]
    assert root > 0
    assert math.isclose(sum(n.features["flops"] for n in leaves(tree.root)), root, rel_tol=1e-3)
    # ... and the leaves hold everything FlopCounterMode counted for the whole forward pass
    assert math.isclose(tree.meta["flops_counted"], root, rel_tol=1e-9)
    for node in tree.nodes():
        if not node.is_leaf:
            kids = sum(c.features["flops"] for c in node.children)
            assert math.isclose(kids, node.features["flops"], rel_tol=1e-9, abs_tol=1e-12)


def bert_flops(batch: int, seq: int, hidden: int, layers: int, inter: int, heads: int) -> int:
    """FLOPs of a BertModel forward (eager attention, no mask), by hand (module docstring of
    irene.tracing.flops: matmul 2/MAC, bias 1, layer norm 7, softmax 5, GELU 5, add/mul 1)."""
    tokens = batch * seq
    linear = lambda n_in, n_out, rows=tokens: 2 * rows * n_in * n_out + rows * n_out  # noqa: E731
    norm = 7 * tokens * hidden
    embeddings = 2 * tokens * hidden + norm  # two adds, LayerNorm
    scores = batch * heads * seq * seq
    attention = (3 * linear(hidden, hidden) + 2 * (2 * tokens * seq * hidden)  # QKV, QK^T, PV
                 + scores + 5 * scores  # scale, softmax
                 + linear(hidden, hidden) + tokens * hidden + norm)  # output, residual, LN
    mlp = linear(hidden, inter) + 5 * tokens * inter + linear(inter, hidden) + tokens * hidden \
        + norm
    pooler = linear(hidden, hidden, rows=batch) + batch * hidden  # dense + tanh
    return embeddings + layers * (attention + mlp) + pooler


def test_tiny_bert_root_flops_match_hand_formula(bert_tree):
    expected = bert_flops(B, S, hidden=32, layers=2, inter=64, heads=4)
    assert expected == 605_824
    assert bert_tree.root.features["flops"] * 1e6 == pytest.approx(expected, rel=1e-12)


def test_leaf_flops_per_primitive(bert_tree):
    nodes = by_scope(bert_tree)
    att = "root.encoder.layer.0.attention.self"
    assert nodes[f"{att}.query"].features["flops"] * 1e6 == pytest.approx(2 * 16 * 32 * 32 + 512)
    assert nodes[f"{att}.matmul"].features["flops"] * 1e6 == pytest.approx(2 * B * 4 * S * S * 8)
    assert nodes[f"{att}.softmax"].features["flops"] * 1e6 == pytest.approx(5 * B * 4 * S * S)
    ln = nodes["root.encoder.layer.0.output.LayerNorm"]
    assert ln.features["flops"] * 1e6 == pytest.approx(7 * B * S * 32)


def test_mem_bytes_is_inputs_outputs_and_parameters(bert_tree):
    query = by_scope(bert_tree)["root.encoder.layer.0.attention.self.query"]
    floats = B * S * 32 + B * S * 32 + 32 * 32 + 32  # input, output, weight, bias
    assert query.features["mem_bytes"] == pytest.approx(floats * 4 / 2**20)
    layer = by_scope(bert_tree)["root.encoder.layer.0"]
    assert layer.features["mem_bytes"] == pytest.approx(
        sum(n.features["mem_bytes"] for n in leaves(layer)))


# -- structure ----------------------------------------------------------------------------------

def test_bert_structure_like_irene(bert_tree):
    nodes = by_scope(bert_tree)
    assert bert_tree.root.instance_type == "BertModel" and bert_tree.root.type == "model"
    assert bert_tree.root.scope == "root" and bert_tree.root.level == 0
    att = nodes["root.encoder.layer.0.attention.self"]
    kinds = [c.instance_type for c in att.children if c.type == "ml"]
    assert kinds.count("MatMul") == 2 and kinds.count("Softmax") == 1
    assert kinds.count("Linear") == 3
    assert nodes["root.encoder.layer.0"].parent_name == "root.encoder"
    assert nodes["root.encoder.layer.0.attention.self.query"].level == 5
    assert nodes["root.pooler.activation"].instance_type == "Tanh"
    assert not any("Dropout" in n.instance_type or "dropout" in n.scope
                   for n in bert_tree.nodes())
    for node in bert_tree.nodes():
        assert node.is_leaf == (node.type == "ml")
        for child in node.children:
            assert child.parent_name == node.scope and child.level == node.level + 1
        assert node.extra["dtype"] == "float32" or node.type == "model"
        assert set(FEATURE_FIELDS) <= set(node.features)
        assert node.features["times_mean"] == 0.0


def test_gpt2_blocks_have_conv1d_leaves():
    tree = trace_model(tiny_gpt2(), B, S, timing=False)
    blocks = [n for n in tree.nodes() if n.instance_type == "GPT2Block"]
    assert len(blocks) == 2
    for block in blocks:
        convs = [n for n in leaves(block) if n.instance_type == "Conv1D"]
        assert len(convs) == 4
        assert all(c.features["flops"] > 0 and c.features["num_parameters"] > 0 for c in convs)


def test_llama_layer_accounts_for_rmsnorm_silu_and_rotary():
    model = tiny_llama()
    tree = trace_model(model, B, S, timing=False)
    nodes = by_scope(tree)
    layer = nodes["root.layers.0"]
    types = {n.instance_type: n for n in leaves(layer)}
    assert {"LlamaRMSNorm", "SiLUActivation", "ApplyRotaryPosEmb", "MatMul",
            "Softmax"} <= set(types)
    norms = [n for n in leaves(layer) if n.instance_type == "LlamaRMSNorm"]
    assert len(norms) == 2
    tokens, hidden = B * S, 32
    # RMSNorm: pow, mean, mul by rsqrt, weight = 4 per element, + eps add and rsqrt per row
    assert norms[0].features["flops"] * 1e6 == 4 * tokens * hidden + 2 * tokens
    assert types["SiLUActivation"].features["flops"] * 1e6 == 2 * tokens * 64
    rotary = types["ApplyRotaryPosEmb"]
    assert rotary.parent_name == "root.layers.0.self_attn" and rotary.features["flops"] > 0
    assert nodes["root.rotary_emb"].type == "ml"  # cos/sin tables, computed once per forward
    assert nodes["root.rotary_emb"].features["flops"] > 0


def test_shared_module_instance_gets_a_leaf_under_each_caller():
    # openai-gpt's MLPs all call one shared activation object (a module-level instance)
    tree = trace_model(tiny_model("openai-gpt", n_layer=3), B, S, timing=False)
    acts = [n for n in tree.nodes() if n.instance_type == "NewGELUActivation"]
    assert [n.parent_name for n in acts] == [f"root.h.{i}.mlp" for i in range(3)]
    assert [n.scope for n in acts] == [f"root.h.{i}.mlp.act" for i in range(3)]
    assert len({n.features["flops"] for n in acts}) == 1 and acts[0].extra["calls"] == 1
    scopes = [n.scope for n in tree.nodes()]
    assert len(scopes) == len(set(scopes))


def test_sdpa_is_one_fused_primitive():
    tree = trace_model(tiny_llama(), B, S, timing=False, attn="sdpa")
    att = by_scope(tree)["root.layers.0.self_attn"]
    kinds = [c.instance_type for c in att.children]
    assert kinds.count("ScaledDotProductAttention") == 1
    assert "Softmax" not in kinds and "MatMul" not in kinds
    sdpa = next(c for c in att.children if c.instance_type == "ScaledDotProductAttention")
    scores = B * 4 * S * S
    matmuls = 2 * (2 * scores * 8)
    assert sdpa.features["flops"] * 1e6 in (matmuls + 6 * scores, matmuls + 7 * scores)
    assert tree.meta["attn"] == "sdpa"


def test_ids_unique_and_stable_across_runs():
    first = trace_model(tiny_bert(), B, S, timing=False, model_name="m")
    second = trace_model(tiny_bert(), B, S, timing=False, model_name="m")
    ids = [n.id for n in first.nodes()]
    assert len(ids) == len(set(ids))
    assert ids == [n.id for n in second.nodes()]
    assert first.root.id == node_id("m", B, S, "root")
    other = trace_model(tiny_bert(), B, S + 1, timing=False, model_name="m")
    assert not set(ids) & {n.id for n in other.nodes()}


def test_round_trip_through_reader(bert_tree, tmp_path):
    path = tmp_path / "trees.jsonl"
    write_trees([bert_tree], path)
    [back] = read_trees(path)
    assert back.to_dict() == bert_tree.to_dict()
    assert back.model_name == "tiny-bert" and back.key[:3] == ("tiny-bert", B, S)
    assert back.key == bert_tree.key and back.key.schema == "irene v1"
    assert back.key.phase == "forward" and back.key.dtype == "float32" and back.key.meter == "none"
    meta = back.meta
    assert meta["created_by"].startswith("irene ") and meta["device"] == "cpu"
    assert meta["protocol"] is None and meta["meter"] == "none"
    assert "flops" in meta["units"] and "2 FLOPs" in meta["units"]["flops"]
    assert meta["features_available"] == ["num_parameters", "flops", "mem_bytes"]
    assert "gpu" in meta["features_unavailable"]


# -- replays ------------------------------------------------------------------------------------

def test_timing_replays_every_node_and_dedups_identical_ones():
    cache = MeasurementCache()
    tree = trace_model(tiny_bert(), B, S, protocol=FAST, cache=cache)
    for node in tree.nodes():
        assert node.features["times_mean"] > 0, node.scope
        assert node.features["mem"] > 0, node.scope
        assert node.features["gpu"] == 0.0
        assert node.ground_truth_energy is None
    nodes = list(tree.nodes())
    # the two layers are identical: every node of the second one is a cache hit
    assert cache.hits >= len(list(by_scope(tree)["root.encoder.layer.1"].walk()))
    assert cache.hits + cache.misses == len(nodes)
    assert tree.meta["dedup"] == cache.stats()
    layer0, layer1 = (by_scope(tree)[f"root.encoder.layer.{i}"] for i in (0, 1))
    assert layer0.extra["signature"] == layer1.extra["signature"]
    assert layer0.features["times_mean"] == layer1.features["times_mean"]
    assert set(tree.meta["features_available"]) >= {"times_mean", "cpu", "mem"}
    assert tree.meta["protocol"]["runs"] == 1


def test_no_dedup_measures_every_node():
    protocol = Protocol(warmup=0, runs=1, min_run_seconds=0.0, dedup=False)
    tree = trace_model(tiny_bert(), B, S, protocol=protocol)
    assert tree.meta["dedup"]["hits"] == 0
    assert tree.meta["dedup"]["misses"] == len(list(tree.nodes()))


class CallClock:
    """A fake clock that moves only when a replayed call runs: every call lasts ``call_s``."""

    def __init__(self, call_s: float) -> None:
        self.call_s, self.now = call_s, 0.0

    def __call__(self) -> float:
        return self.now

    def timed(self, fn):
        def call():
            fn()
            self.now += self.call_s
        return call


def test_meter_gives_ground_truth_energy_on_every_node(monkeypatch):
    """Every node's energy per call is the meter's power x the time per call, exactly, when
    the protocol and the meter read one clock (a fake one here: no wall-clock speed)."""
    from irene.measure import protocol as protocol_module
    from irene.tracing import build

    clock = CallClock(call_s=1e-3)
    meter = SimulatedMeter(power_w=10.0, clock=clock)
    real = protocol_module.measure_callable

    def measure_callable(fn, **kwargs):
        return real(clock.timed(fn), clock=clock, **kwargs)

    monkeypatch.setattr(build, "measure_callable", measure_callable)
    protocol = Protocol(warmup=0, runs=2, min_run_seconds=0.005)
    tree = trace_model(tiny_gpt2(), B, S, protocol=protocol, meter=meter)
    for node in tree.nodes():
        assert node.features["times_mean"] == pytest.approx(1e-3, rel=1e-9), node.scope
        assert node.ground_truth_energy == pytest.approx(10.0 * 1e-3, rel=1e-9), node.scope
    assert tree.meta["meter"] == "simulated"


def test_meter_without_timing_is_refused():
    with pytest.raises(ValueError, match="no-timing"):
        trace_model(tiny_gpt2(), B, S, timing=False, meter=SimulatedMeter())


def test_sequence_longer_than_positions_is_refused():
    with pytest.raises(ValueError, match="exceeds the 64 positions"):
        trace_model(tiny_bert(), 1, 65, timing=False)


@pytest.mark.gpu
def test_trace_on_cuda_records_gpu_features():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    tree = trace_model(tiny_bert(), B, S, device="cuda", protocol=FAST)
    assert tree.meta["device"] == "cuda"
    assert all(n.features["times_mean"] > 0 for n in tree.nodes())
