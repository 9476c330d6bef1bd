"""Prefill and decode traces of tiny decoders built in the test (CPU, random weights, no download):
FLOPs and bytes against hand formulas, the KV cache left as it was by replays, prefill = forward."""

from __future__ import annotations

import inspect
import math
import warnings

import pytest
import torch
import transformers as T
from support.models import tiny_model

from irene.cli import main
from irene.measure import MeasurementCache, Protocol, SimulatedMeter
from irene.tracing import trace_model
from irene.tracing.capture import ForwardCapture
from irene.tracing.generation import KV_CACHE_UPDATE, PhaseError, StepCache, prepare_step
from irene.tracing.tracer import planned_key
from irene.tree import read_trees
from irene.workload import Workload, WorkloadError

FAST = Protocol(warmup=0, runs=1, min_run_seconds=0.0)
F32 = 4  # bytes per float32
ID = 8  # bytes per int64 token / position id


def tiny_gpt2(attn: str = "eager") -> T.PreTrainedModel:
    return tiny_model("gpt2", attn)


def tiny_llama(attn: str = "eager") -> T.PreTrainedModel:
    return tiny_model("llama", attn)


def tiny_neox(attn: str = "eager") -> T.PreTrainedModel:
    return tiny_model("neox", attn)


def tiny_phi(attn: str = "eager") -> T.PreTrainedModel:
    return tiny_model("phi", attn)


DECODERS = {"gpt2": tiny_gpt2, "llama": tiny_llama, "neox": tiny_neox, "phi": tiny_phi}


# -- hand formulas -------------------------------------------------------------------------------
# Conventions of irene.tracing.flops (2 FLOPs per multiply-add, +1 per output for a bias,
# layer norm 7, RMS norm 4 + 2 per row, softmax 5, SiLU 2, tanh-GELU as written in
# NewGELUActivation 8) and of irene.tracing.build (mem_bytes: distinct inputs + outputs +
# parameters of each primitive call). A decode step: T = B tokens, each attending to K = L + 1
# keys; the KV-cache write reads L cached + 1 new and writes K tokens of keys and values.


def attention_scores(b: int, heads: int, keys: int, dim: int, *, sdpa: bool) -> tuple[int, int]:
    """(FLOPs, bytes) of attention of one new token per sequence over ``keys`` keys: eager
    (QKᵀ, scale, additive mask, softmax, ·V) or SDPA (no mask: 2 matmuls + 6 per score)."""
    scores = b * heads * keys
    if sdpa:
        return 4 * scores * dim + 6 * scores, 0  # bytes depend on the K/V layout: see callers
    flops = 2 * scores * dim + scores + scores + 5 * scores + 2 * scores * dim
    floats = ((b * heads * dim + scores * dim + scores)  # q, Kᵀ, scores
              + 2 * scores  # scale
              + 2 * scores + b * keys  # + mask (B, 1, 1, K)
              + 2 * scores  # softmax
              + (scores + scores * dim + b * heads * dim))  # probabilities, V, output
    return flops, F32 * floats


def kv_update_bytes(b: int, kv_heads: int, dim: int, context: int) -> int:
    """Read the cached keys and values (L), the new ones (1), write the grown cache (L + 1)."""
    return F32 * 2 * b * kv_heads * dim * (context + 1 + context + 1)


def gpt2_decode(b: int, context: int, *, sdpa: bool = False) -> dict[str, tuple[int, int]]:
    """(FLOPs, bytes) of the tiny GPT-2's decode step: ``attention`` (one GPT2Attention) and
    ``model`` (the whole step)."""
    t, h, heads, dim, inner, vocab, positions, layers = b, 32, 4, 8, 128, 100, 64, 2
    keys = context + 1
    attn_f, attn_b = attention_scores(b, heads, keys, dim, sdpa=sdpa)
    if sdpa:
        attn_b = F32 * (2 * b * heads * dim + 2 * b * heads * keys * dim)  # q, out, K, V
    c_attn = (2 * t * h * 3 * h + 3 * t * h, F32 * (t * h + 3 * t * h + 3 * h * h + 3 * h))
    c_proj = (2 * t * h * h + t * h, F32 * (2 * t * h + h * h + h))
    attention = (c_attn[0] + attn_f + c_proj[0],
                 c_attn[1] + kv_update_bytes(b, heads, dim, context) + attn_b + c_proj[1])
    norm = (7 * t * h, F32 * (2 * t * h + 2 * h))
    add = (t * h, F32 * 3 * t * h)
    mlp = (2 * t * h * inner + t * inner + 8 * t * inner + 2 * t * inner * h + t * h,
           F32 * ((t * h + t * inner + h * inner + inner) + 2 * t * inner
                  + (t * inner + t * h + inner * h + h)))
    block = [sum(part[i] for part in (norm, attention, add, norm, mlp, add)) for i in (0, 1)]
    embeddings = (t * h, ID * t + F32 * (vocab * h + t * h)  # wte
                  + ID + F32 * (positions * h + h)  # wpe at one position
                  + F32 * (t * h + h + t * h))  # wte + wpe
    model = tuple(embeddings[i] + layers * block[i] + norm[i] for i in (0, 1))
    return {"attention": attention, "model": model}


def llama_decode(b: int, context: int, *, sdpa: bool = False) -> dict[str, tuple[int, int]]:
    """(FLOPs, bytes) of the tiny Llama's decode step (grouped-query attention: 4 query heads,
    2 key/value heads; eager attention repeats K/V to 4 heads, SDPA reads them grouped)."""
    t, h, heads, kv, dim, inner, vocab, layers = b, 32, 4, 2, 8, 64, 100, 2
    keys = context + 1
    attn_f, attn_b = attention_scores(b, heads, keys, dim, sdpa=sdpa)
    if sdpa:
        attn_b = F32 * (2 * b * heads * dim + 2 * b * kv * keys * dim)

    def linear(n_in: int, n_out: int) -> tuple[int, int]:
        return 2 * t * n_in * n_out, F32 * (t * n_in + t * n_out + n_in * n_out)

    q, k, o = linear(h, heads * dim), linear(h, kv * dim), linear(heads * dim, h)
    rope = (3.5 * (b * heads * dim + b * kv * dim),
            F32 * (2 * b * heads * dim + 2 * b * kv * dim + 2 * dim))
    attention = (q[0] + 2 * k[0] + rope[0] + attn_f + o[0],
                 q[1] + 2 * k[1] + rope[1] + kv_update_bytes(b, kv, dim, context) + attn_b
                 + o[1])
    norm = (4 * t * h + 2 * t, F32 * (2 * t * h + h))
    add = (t * h, F32 * 3 * t * h)
    gate, down = linear(h, inner), linear(inner, h)
    mlp = (2 * gate[0] + 2 * t * inner + t * inner + down[0],
           2 * gate[1] + F32 * 2 * t * inner + F32 * 3 * t * inner + down[1])
    block = [sum(part[i] for part in (norm, attention, add, norm, mlp, add)) for i in (0, 1)]
    embed = (0, ID * t + F32 * (vocab * h + t * h))
    # cos/sin at one position: the d/2 frequencies x the position (a (d/2 x 1) @ (1 x 1)
    # matmul, 2 FLOPs each, in earlier 5.x; an element-wise product, 1 each, since), then
    # cos, sin and the two scalings over d
    per_frequency = 2 if ROPE_FREQUENCIES_BY_MATMUL else 1
    rotary = (per_frequency * dim // 2 + 4 * dim, F32 * (t * h + 2 * dim) + ID)
    model = tuple(embed[i] + rotary[i] + layers * block[i] + norm[i] for i in (0, 1))
    return {"attention": attention, "model": model}


#: how the installed transformers computes Llama's rotary frequencies (the hand formula follows
#: the code it traces)
ROPE_FREQUENCIES_BY_MATMUL = "@ position_ids_expanded" in inspect.getsource(
    T.models.llama.modeling_llama.LlamaRotaryEmbedding.forward)


def totals(node) -> tuple[float, float]:
    """(FLOPs, bytes) of a node, from its MFLOP / MiB features."""
    return node.features["flops"] * 1e6, node.features["mem_bytes"] * 2**20


@pytest.mark.parametrize("make, formula, attention", [
    (tiny_gpt2, gpt2_decode, "root.h.0.attn"),
    (tiny_llama, llama_decode, "root.layers.0.self_attn"),
])
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("context", [5, 40])
def test_decode_flops_and_bytes_match_hand_formulas(make, formula, attention, attn, context):
    b = 3
    tree = trace_model(make(attn), b, 1, timing=False, attn=attn, phase="decode",
                       context_len=context)
    expected = formula(b, context, sdpa=attn == "sdpa")
    nodes = {n.scope: n for n in tree.nodes()}
    flops, nbytes = totals(nodes[attention])
    assert flops == pytest.approx(expected["attention"][0], rel=1e-12)
    assert nbytes == pytest.approx(expected["attention"][1], rel=1e-12)
    flops, nbytes = totals(tree.root)
    assert flops == pytest.approx(expected["model"][0], rel=1e-12)
    assert nbytes == pytest.approx(expected["model"][1], rel=1e-12)
    assert (tree.batch_size, tree.seq_len) == (b, 1)
    assert tree.meta["phase"] == "decode" and tree.meta["context_len"] == context


def test_decode_cost_grows_linearly_with_the_context():
    """Per layer and per extra cached token: eager attention 4·B·h·d + 7·B·h FLOPs."""
    b, heads, dim, layers = 2, 4, 8, 2
    trees = {ctx: trace_model(tiny_gpt2(), b, 1, timing=False, phase="decode", context_len=ctx)
             for ctx in (10, 20, 30)}
    flops = {ctx: tree.root.features["flops"] * 1e6 for ctx, tree in trees.items()}
    per_token = layers * (4 * b * heads * dim + 7 * b * heads)
    assert flops[20] - flops[10] == pytest.approx(10 * per_token)
    assert flops[30] - flops[20] == pytest.approx(10 * per_token)


def test_kv_cache_update_is_a_leaf_per_layer():
    tree = trace_model(tiny_llama(), 2, 1, timing=False, phase="decode", context_len=6)
    updates = [n for n in tree.nodes() if n.instance_type == KV_CACHE_UPDATE]
    assert [n.parent_name for n in updates] == [f"root.layers.{i}.self_attn" for i in (0, 1)]
    for node in updates:
        assert node.type == "ml" and node.features["flops"] == 0
        assert node.features["mem_bytes"] * 2**20 == kv_update_bytes(2, 2, 8, 6)
        assert node.extra["output_shapes"] == [[2, 2, 7, 8], [2, 2, 7, 8]]
    assert "KVCacheUpdate" in tree.meta["units"]["mem_bytes"]
    assert "decode step" in tree.meta["units"]["flops"]


# -- prefill = forward ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(DECODERS))
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_prefill_equals_forward_up_to_the_cache_writes(name, attn):
    model = DECODERS[name](attn)
    forward = trace_model(model, 2, 7, timing=False, attn=attn)
    prefill = trace_model(model, 2, 7, timing=False, attn=attn, phase="prefill")
    assert prefill.root.features["flops"] == forward.root.features["flops"]
    assert prefill.meta["flops_counted"] == forward.meta["flops_counted"]
    fwd = {n.scope: n for n in forward.nodes()}
    pre = {n.scope: n for n in prefill.nodes()}
    writes = [s for s, n in pre.items() if n.instance_type == KV_CACHE_UPDATE]
    assert len(writes) == 2 and set(pre) - set(fwd) == set(writes) and set(fwd) <= set(pre)
    for scope, node in fwd.items():
        if node.is_leaf:
            assert pre[scope].features["flops"] == node.features["flops"], scope
            assert pre[scope].features["mem_bytes"] == node.features["mem_bytes"], scope
    extra = sum(pre[s].features["mem_bytes"] for s in writes)
    assert prefill.root.features["mem_bytes"] == pytest.approx(
        forward.root.features["mem_bytes"] + extra, rel=1e-12)


# -- every built-in decoder family, eager and sdpa --------------------------------------------


@pytest.mark.parametrize("name", sorted(DECODERS))
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_decode_step_of_every_decoder_family(name, attn):
    model = DECODERS[name](attn)
    short = trace_model(model, 2, 1, timing=False, attn=attn, phase="decode", context_len=4)
    long = trace_model(model, 2, 1, timing=False, attn=attn, phase="decode", context_len=20)
    for tree in (short, long):
        updates = [n for n in tree.nodes() if n.instance_type == KV_CACHE_UPDATE]
        assert len(updates) == 2
    assert long.root.features["flops"] > short.root.features["flops"]
    assert long.root.features["mem_bytes"] > short.root.features["mem_bytes"]
    assert short.key != long.key and short.key.context_len == 4


def test_encoders_and_models_without_a_cache_are_refused():
    bert = tiny_model("bert", num_hidden_layers=1)
    with pytest.raises(PhaseError, match="decoder-only"):
        trace_model(bert, 1, 1, timing=False, phase="decode", context_len=3)
    gpt1 = tiny_model("openai-gpt", n_layer=1)
    with pytest.raises(PhaseError, match="KV cache"):
        trace_model(gpt1, 1, 4, timing=False, phase="prefill")


@pytest.mark.parametrize("phase, seq, context, message", [
    ("decode", 2, 5, "seq_len 2 must be 1"), ("decode", 1, 0, "context_len must be >= 1"),
    ("forward", 4, 3, "no KV cache"), ("sample", 4, 0, "phase must be one of"),
    ("decode", 1, 64, "exceeds the 64 positions"),
])
def test_impossible_phase_settings_are_refused(phase, seq, context, message):
    with pytest.raises(ValueError, match=message):
        trace_model(tiny_gpt2(), 1, seq, timing=False, phase=phase, context_len=context)


# -- replays and the cache ---------------------------------------------------------------------


def capture_step(model, phase: str, b: int, s: int, context: int):
    step = prepare_step(model, phase, b, s, context)
    capture = ForwardCapture(model, record_inputs=True, dedup=False)
    with torch.no_grad(), capture, step.observing(capture):
        model(**step.inputs)
    return step, capture


def cache_contents(cache: StepCache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(layer.keys.clone(), layer.values.clone()) for layer in cache.layers]


def test_decode_replays_leave_the_cache_as_the_step_found_it():
    model = tiny_llama()
    step = prepare_step(model, "decode", 2, 1, 9)
    before = cache_contents(step.cache)
    capture = ForwardCapture(model, record_inputs=True, dedup=False)
    with torch.no_grad(), capture, step.observing(capture):
        model(**step.inputs)
    assert step.cache.seq_lengths() == [10, 10]  # the captured step appended its token
    records = {r.scope: r for r in capture.root.walk()}
    stateful = ["root", "root.layers.0", "root.layers.1.self_attn",
                "root.layers.0.self_attn.kv_cache_update"]
    with torch.no_grad():
        for scope in stateful:
            outputs = []
            for _ in range(3):
                outputs.append(records[scope].replay())
                # each replay starts from the 9 cached tokens and appends exactly one
                assert step.cache.seq_lengths()[0 if "0" in scope or scope == "root" else 1] \
                    == 10, scope
                assert max(step.cache.seq_lengths()) == 10, scope
            first = torch.utils._pytree.tree_leaves(outputs[0])
            for other in outputs[1:]:  # the same state gives the same result every time
                for a, b in zip(first, torch.utils._pytree.tree_leaves(other), strict=True):
                    if isinstance(a, torch.Tensor):
                        assert torch.equal(a, b), scope
    step.restore()
    assert step.cache.seq_lengths() == [9, 9]
    for (k0, v0), layer in zip(before, step.cache.layers, strict=True):
        assert torch.equal(k0, layer.keys) and torch.equal(v0, layer.values)


def test_replayed_attention_sees_the_cache_of_the_step_start():
    """A replayed attention gives what the same module gives on a fresh DynamicCache holding the
    step's cached tokens, on every replay, even if the live cache was changed in between."""
    from transformers import DynamicCache

    model = tiny_gpt2()
    step = prepare_step(model, "decode", 1, 1, 6)
    fresh = DynamicCache(config=model.config)
    for index, layer in enumerate(step.cache.layers):
        DynamicCache.update(fresh, layer.keys.clone(), layer.values.clone(), index)
    capture = ForwardCapture(model, record_inputs=True, dedup=False)
    with torch.no_grad(), capture, step.observing(capture):
        model(**step.inputs)
    record = next(r for r in capture.root.walk() if r.scope == "root.h.1.attn")
    args, kwargs = record.replay.args[-2:]
    # the attention takes the cache as ``cache`` (transformers >= 5.x where it replaced
    # ``past_key_values``) or ``past_key_values`` (earlier 5.x)
    (name,) = [k for k, v in kwargs.items() if isinstance(v, StepCache)]
    with torch.no_grad():
        reference = record.module(*args, **{**kwargs, name: fresh})[0]
        for _ in range(2):
            assert torch.equal(record.replay()[0], reference)
            step.cache.layers[1].keys = step.cache.layers[1].keys * 2  # tamper with it
        assert torch.equal(record.replay()[0], reference)
    assert fresh.get_seq_length(1) == 7


def test_timed_decode_with_the_simulated_meter_and_shared_measurements():
    model = tiny_gpt2()
    cache = MeasurementCache()
    meter = SimulatedMeter(power_w=10.0)
    protocol = Protocol(warmup=0, runs=1, min_run_seconds=0.002)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a busy machine is warned about, not an error here
        short = trace_model(model, 2, 1, phase="decode", context_len=8, meter=meter,
                            protocol=protocol, cache=cache)
        hits = cache.hits
        long = trace_model(model, 2, 1, phase="decode", context_len=16, meter=meter,
                           protocol=protocol, cache=cache)
    for tree in (short, long):
        assert all(n.ground_truth_energy and n.ground_truth_energy > 0 for n in tree.nodes())
        assert tree.meta["meter"] == "simulated"
    by_scope = {n.scope: n for n in short.nodes()}
    # identical layers share one measurement, cache writes included
    assert by_scope["root.h.0.attn"].extra["signature"] == \
        by_scope["root.h.1.attn"].extra["signature"]
    assert by_scope["root.h.0.attn.kv_cache_update"].extra["signature"] == \
        by_scope["root.h.1.attn.kv_cache_update"].extra["signature"]
    # ... but a longer cache is other work: the nodes that take it are measured again
    long_scope = {n.scope: n for n in long.nodes()}
    for scope in ("root", "root.h.0.attn", "root.h.0.attn.kv_cache_update",
                  "root.h.0.attn.matmul"):
        assert long_scope[scope].extra["signature"] != by_scope[scope].extra["signature"]
    # while the weights' work (the MLP) is the same work at both lengths and is reused
    assert long_scope["root.h.0.mlp"].extra["signature"] == by_scope["root.h.0.mlp"].extra[
        "signature"]
    assert cache.hits > hits


def test_planned_key_is_the_key_of_the_trace():
    tree = trace_model(tiny_gpt2(), 2, 1, timing=False, phase="decode", context_len=12,
                       model_name="tiny")
    planned = planned_key("tiny", Workload(phase="decode", batch_size=2, seq_len=1,
                                           context_len=12),
                          schema="irene", timing=False, meter=None, protocol=Protocol())
    assert planned == tree.key
    assert planned != planned._replace(context_len=13)
    assert tree.label == "tiny · batch 2 · seq 1 · decode @ context 12"


# -- the CLI -----------------------------------------------------------------------------------


@pytest.fixture()
def gpt2_dir(tmp_path):
    directory = tmp_path / "tiny-gpt2"
    tiny_gpt2().config.save_pretrained(directory)
    return str(directory)


def test_cli_traces_a_decode_sweep_and_resumes(gpt2_dir, tmp_path, capsys):
    out = tmp_path / "decode.jsonl"
    argv = ["trace", gpt2_dir, "--phase", "decode", "--context-lens", "4,8", "--batch-size",
            "2", "--no-timing", "--offline", "-o", str(out)]
    assert main(argv) == 0
    assert main([*argv[:5], "4,8,16", *argv[6:]]) == 0
    assert "2 of 3 combinations already traced" in capsys.readouterr().err
    trees = read_trees(out)
    assert [(t.key.phase, t.key.context_len, t.seq_len) for t in trees] == \
        [("decode", 4, 1), ("decode", 8, 1), ("decode", 16, 1)]
    assert main(["trace", gpt2_dir, "--phase", "prefill", "--seq-len", "8", "--no-timing",
                 "--offline", "-o", str(out)]) == 0
    prefill = read_trees(out)[-1]
    assert (prefill.key.phase, prefill.key.context_len, prefill.seq_len) == ("prefill", 0, 8)


@pytest.mark.parametrize("extra, message", [
    (["--phase", "decode"], "--context-len must be >= 1 with --phase decode"),
    (["--phase", "decode", "--context-len", "4", "--seq-len", "8"], "one token per sequence"),
    (["--context-len", "4"], "needs --phase prefill or decode"),
    (["--phase", "decode", "--context-len", "70"], "exceeds the 64 positions"),
])
def test_cli_refuses_impossible_phases_in_one_line(gpt2_dir, tmp_path, capsys, extra, message):
    out = tmp_path / "x.jsonl"
    assert main(["trace", gpt2_dir, "--no-timing", "--offline", "-o", str(out), *extra]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1 and message in errors[0]
    assert errors[0].startswith("irene trace: error:")
    assert not out.exists() or out.stat().st_size == 0


def test_features_are_close_to_affine_in_the_context():
    """Why a few traced context lengths suffice: FLOPs and bytes are exactly affine in L."""
    b = 2
    values = {ctx: totals(trace_model(tiny_llama(), b, 1, timing=False, phase="decode",
                                      context_len=ctx).root) for ctx in (4, 12, 20)}
    for i in (0, 1):
        middle = (values[4][i] + values[20][i]) / 2
        assert math.isclose(values[12][i], middle, rel_tol=1e-12)


def test_a_chunked_prefill_of_one_token_is_a_decode_step():
    model = tiny_llama()
    decode = trace_model(model, 2, 1, timing=False, phase="decode", context_len=9)
    chunk = trace_model(model, 2, 1, timing=False, phase="prefill", context_len=9)
    assert totals(chunk.root) == totals(decode.root)
    longer = trace_model(model, 2, 4, timing=False, phase="prefill", context_len=9)
    assert longer.label.endswith("seq 4 · prefill @ context 9")
    attention = next(n for n in longer.nodes() if n.scope == "root.layers.0.self_attn.matmul")
    assert attention.extra["output_shapes"] == [[2, 4, 4, 13]]  # 4 queries x (9 + 4) keys


@pytest.mark.gpu
def test_timed_decode_on_cuda():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tree = trace_model(tiny_llama(), 2, 1, device="cuda", protocol=FAST, phase="decode",
                           context_len=32)
    assert tree.meta["device"] == "cuda" and tree.key.context_len == 32
    assert all(n.features["times_mean"] > 0 for n in tree.nodes())


def test_one_workload_rule_spelt_by_each_caller():
    """The rule lives once (irene.workload); the tracer, the command line and a plan each name
    the field their own way."""
    with pytest.raises(WorkloadError) as caught:
        Workload(phase="forward", optimizer="sgd")
    error = caught.value
    assert str(error) == "optimizer sgd needs phase train (a forward pass has no optimiser)"
    assert error.text({"phase": "--phase", "optimizer": "--optimizer"}).startswith(
        "--optimizer sgd needs --phase train")
    assert error.text({"phase": "phase"}, with_field=False).startswith("needs phase train")
    assert Workload(phase="train").optimizer == "adamw"  # the default optimiser
    assert Workload(phase="decode", context_len=1).seq_len == 1
