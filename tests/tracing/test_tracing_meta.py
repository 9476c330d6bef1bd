"""Features-only traces on the meta device equal real-weight traces node by node."""

from __future__ import annotations

import pytest
import transformers as T
from support.models import (
    bert_config,
    distilbert_config,
    gpt2_config,
    llama_config,
    neox_config,
    openai_gpt_config,
    phi_config,
    roberta_config,
)

from irene.cli import main
from irene.measure import Protocol
from irene.tracing import build_model, trace_model
from irene.tracing.meta import META_SHIMS, MetaTraceError, meta_shims
from irene.tree import read_trees

B, S = 2, 8


def comparable(tree) -> list[tuple]:
    """Everything a node says about structure and features, except where it ran."""
    rows = []
    for node in tree.nodes():
        extra = {k: v for k, v in node.extra.items() if k != "signature"}
        rows.append((node.id, node.scope, node.parent_name, node.level, node.type,
                     node.instance_type, node.features["num_parameters"],
                     node.features["flops"], node.features["mem_bytes"],
                     sorted(extra.items())))
    return rows


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("make", [bert_config, gpt2_config, llama_config, neox_config, phi_config])
def test_meta_trace_equals_real_trace_node_by_node(make, attn):
    real_model = build_model(make(), attn=attn)
    meta_model = build_model(make(), attn=attn, device="meta")
    assert all(p.device.type == "meta" for p in meta_model.parameters())
    real = trace_model(real_model, B, S, timing=False, attn=attn, model_name="m")
    meta = trace_model(meta_model, B, S, timing=False, attn=attn, model_name="m")
    assert real.meta["traced_on"] == "cpu" and meta.meta["traced_on"] == "meta"
    assert meta.meta["device"] == "cpu"
    assert meta.meta["flops_counted"] == real.meta["flops_counted"] > 0
    rows_real, rows_meta = comparable(real), comparable(meta)
    assert len(rows_meta) == len(rows_real) > 10
    for a, b in zip(rows_real, rows_meta, strict=True):
        assert a == b, a[1]


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_meta_trace_equals_real_trace_in_bfloat16(attn):
    real = trace_model(build_model(llama_config(), attn=attn, dtype="bfloat16"), B, S, timing=False,
                       attn=attn, dtype="bfloat16", model_name="m")
    meta = trace_model(build_model(llama_config(), attn=attn, dtype="bfloat16", device="meta"),
                       B, S, timing=False, attn=attn, dtype="bfloat16", model_name="m")
    assert meta.root.extra["dtype"] == "bfloat16"
    assert comparable(real) == comparable(meta)


@pytest.mark.parametrize("make", [roberta_config, distilbert_config, openai_gpt_config])
def test_meta_trace_equals_real_trace_for_irene_models(make):
    real = trace_model(build_model(make()), B, S, timing=False, model_name="m")
    meta = trace_model(build_model(make(), device="meta"), B, S, timing=False, model_name="m")
    assert meta.meta["traced_on"] == "meta"
    assert comparable(real) == comparable(meta)


def test_seven_billion_parameters_trace_on_meta():
    config = T.LlamaConfig(vocab_size=32000, hidden_size=4096, intermediate_size=11008,
                           num_hidden_layers=32, num_attention_heads=32,
                           max_position_embeddings=4096)  # Llama-2-7B's shape
    tree = trace_model(build_model(config, device="meta"), 1, 16, timing=False)
    assert tree.root.features["num_parameters"] == 6_738_415_616 - 32000 * 4096  # no lm_head
    layer = next(n for n in tree.nodes() if n.scope == "root.layers.0.mlp.gate_proj")
    assert layer.features["flops"] * 1e6 == 2 * 16 * 4096 * 11008
    assert layer.features["mem_bytes"] * 2**20 == (16 * 4096 + 4096 * 11008 + 16 * 11008) * 4


@pytest.mark.parametrize("make", [bert_config, gpt2_config])
def test_meta_trace_equals_real_trace_under_irene2021(make):
    real = trace_model(build_model(make()), B, S, timing=False, schema="irene2021")
    meta = trace_model(build_model(make(), device="meta"), B, S, timing=False,
                       schema="irene2021")
    assert comparable(real) == comparable(meta)


def test_features_only_by_name_runs_on_meta_without_weights(tmp_path):
    directory = tmp_path / "tiny"
    gpt2_config().save_pretrained(directory)
    tree = trace_model(str(directory), B, S, timing=False, hub=False)
    assert tree.meta["traced_on"] == "meta" and tree.meta["device"] == "cpu"
    real = trace_model(build_model(str(directory), hub=False), B, S, timing=False,
                       model_name=str(directory))
    assert comparable(tree) == comparable(real)
    timed = trace_model(str(directory), 1, 4, hub=False,
                        protocol=Protocol(warmup=0, runs=1, min_run_seconds=0.0))
    assert timed.meta["traced_on"] == "cpu"  # replays need real weights
    assert all(n.features["times_mean"] > 0 for n in timed.nodes())


def test_cli_no_timing_traces_on_meta(tmp_path):
    directory = tmp_path / "tiny"
    bert_config().save_pretrained(directory)
    out = tmp_path / "t.jsonl"
    assert main(["trace", str(directory), "--batch-size", "2", "--seq-len", "8", "--no-timing",
                 "--offline", "-o", str(out)]) == 0
    [tree] = read_trees(out)
    assert tree.meta["traced_on"] == "meta" and tree.meta["device"] == "cpu"
    assert tree.meta["schema"] == {"name": "irene", "version": 1}


def test_features_for_a_cuda_target_trace_without_a_gpu(tmp_path):
    directory = tmp_path / "tiny"
    gpt2_config().save_pretrained(directory)
    tree = trace_model(str(directory), B, S, timing=False, hub=False, device="cuda")
    assert tree.meta["device"] == "cuda" and tree.meta["traced_on"] == "meta"
    cpu = trace_model(str(directory), B, S, timing=False, hub=False)
    assert [n.features for n in tree.nodes()] == [n.features for n in cpu.nodes()]


def test_meta_model_cannot_be_timed():
    with pytest.raises(ValueError, match="meta device has no weights"):
        trace_model(build_model(bert_config(), device="meta"), B, S)


def test_value_dependent_code_on_meta_is_refused_or_traced_for_real(monkeypatch, tmp_path):
    """Without the shim, GPT-2's mask code reads position-id values: a meta model object is
    refused with a clear error; a model given by name is traced with real weights instead."""
    import irene.tracing.meta as meta_module

    monkeypatch.setattr(meta_module, "META_SHIMS", [])
    with pytest.raises(ValueError, match="reads tensor values"):
        trace_model(build_model(gpt2_config(), device="meta"), B, S, timing=False)
    directory = tmp_path / "tiny"
    gpt2_config().save_pretrained(directory)
    with pytest.warns(RuntimeWarning, match="real weights"):
        tree = trace_model(str(directory), B, S, timing=False, hub=False)
    assert tree.meta["traced_on"] == "cpu"
    assert MetaTraceError.__mro__[1] is RuntimeError


def test_meta_shims_are_restored():
    import importlib

    module_name, attr, replacement = META_SHIMS[0]
    module = importlib.import_module(module_name)
    original = getattr(module, attr)
    with meta_shims():
        assert getattr(module, attr) is replacement
    assert getattr(module, attr) is original
