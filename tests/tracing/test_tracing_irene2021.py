"""``schema="irene2021"``: IrEne's leaves and per-operation counts, against hand-written trees.

Tiny BERT and GPT-2 (one layer, hidden 32, 4 heads, batch 2 x seq 8, float32). Every expected
number below is worked out by hand from IrEne's published counting rules (see
``irene.tracing.schemas``): an ``Embedding`` reads its int64 ids and writes its output; a 3-D
``Linear`` is a batched matmul (weight read once per batch row) plus an in-place bias add (2
output passes); a 2-D ``Linear``/``Conv1D`` is ``addmm`` (input + weight + output, no bias FLOPs);
``LayerNorm`` 8 FLOPs / 4 passes per element; ``Softmax`` 5 / 3; ``Tanh`` 4 / 1.
"""

from __future__ import annotations

import pytest
from support.models import tiny_model

from irene.cli import main
from irene.tracing import trace_model
from irene.tracing.schemas import IRENE2021, irene2021_call_cost, trace_rules
from irene.tree import read_trees

B, S, H, HEADS, INTER = 2, 8, 32, 4, 64
TOKENS, F32, I64 = B * S, 4, 8
SCORES = B * HEADS * S * S


def tiny_bert():
    return tiny_model("bert", "eager", num_hidden_layers=1, hidden_size=H,
                      num_attention_heads=HEADS, intermediate_size=INTER)


def tiny_gpt2():
    return tiny_model("gpt2", "eager", n_layer=1, n_embd=H, n_head=HEADS)


def linear3d(n_in: int, n_out: int) -> tuple[int, int]:
    """(FLOPs, bytes) of a Linear on a (B, S, n_in) input, as IrEne counted it."""
    flops = 2 * B * S * n_in * n_out + TOKENS * n_out
    mem = B * (S * n_in + n_in * n_out + S * n_out) * F32 + 2 * TOKENS * n_out * F32
    return flops, mem


def addmm(rows: int, n_in: int, n_out: int) -> tuple[int, int]:
    return 2 * rows * n_in * n_out, (rows * n_in + n_in * n_out + rows * n_out) * F32


def attention_leaves(scope: str) -> list[tuple]:
    matmul = (2 * B * HEADS * S * (H // HEADS) * S,
              B * HEADS * (S * (H // HEADS) * 2 + S * S) * F32)
    return [(f"{scope}.matmul", "MatMul", *matmul), (f"{scope}.matmul", "MatMul", *matmul),
            (f"{scope}.softmax", "Softmax", 5 * SCORES, 3 * SCORES * F32)]


LAYER_NORM = (8 * TOKENS * H, 4 * TOKENS * H * F32)
WORD_EMBEDDING = (0, TOKENS * I64 + TOKENS * H * F32)
POSITION_EMBEDDING = (0, S * I64 + S * H * F32)  # position ids (1, S), broadcast later

#: IrEne-style tree of the tiny BERT: (scope, instance type, FLOPs, bytes) of every ml leaf
BERT_LEAVES = [
    ("root.embeddings.word_embeddings", "Embedding", *WORD_EMBEDDING),
    ("root.embeddings.token_type_embeddings", "Embedding", *WORD_EMBEDDING),
    ("root.embeddings.position_embeddings", "Embedding", *POSITION_EMBEDDING),
    ("root.embeddings.LayerNorm", "LayerNorm", *LAYER_NORM),
    ("root.encoder.layer.0.attention.self.query", "Linear", *linear3d(H, H)),
    ("root.encoder.layer.0.attention.self.key", "Linear", *linear3d(H, H)),
    ("root.encoder.layer.0.attention.self.value", "Linear", *linear3d(H, H)),
    *attention_leaves("root.encoder.layer.0.attention.self"),
    ("root.encoder.layer.0.attention.output.dense", "Linear", *linear3d(H, H)),
    ("root.encoder.layer.0.attention.output.LayerNorm", "LayerNorm", *LAYER_NORM),
    ("root.encoder.layer.0.intermediate.dense", "Linear", *linear3d(H, INTER)),
    ("root.encoder.layer.0.output.dense", "Linear", *linear3d(INTER, H)),
    ("root.encoder.layer.0.output.LayerNorm", "LayerNorm", *LAYER_NORM),
    ("root.pooler.dense", "Linear", *addmm(B, H, H)),  # first token only: 2-D input
    ("root.pooler.activation", "Tanh", 4 * B * H, B * H * F32),
]
BERT_MODULES = {"root": "BertModel", "root.embeddings": "BertEmbeddings",
                "root.encoder": "BertEncoder", "root.encoder.layer.0": "BertLayer",
                "root.encoder.layer.0.attention": "BertAttention",
                "root.encoder.layer.0.attention.self": "BertSelfAttention",
                "root.encoder.layer.0.attention.output": "BertSelfOutput",
                "root.encoder.layer.0.intermediate": "BertIntermediate",
                "root.encoder.layer.0.output": "BertOutput", "root.pooler": "BertPooler"}

GPT2_LEAVES = [
    ("root.wte", "Embedding", *WORD_EMBEDDING),
    ("root.wpe", "Embedding", *POSITION_EMBEDDING),
    ("root.h.0.ln_1", "LayerNorm", *LAYER_NORM),
    ("root.h.0.attn.c_attn", "Conv1D", *addmm(TOKENS, H, 3 * H)),
    *attention_leaves("root.h.0.attn"),
    ("root.h.0.attn.c_proj", "Conv1D", *addmm(TOKENS, H, H)),
    ("root.h.0.ln_2", "LayerNorm", *LAYER_NORM),
    ("root.h.0.mlp.c_fc", "Conv1D", *addmm(TOKENS, H, 4 * H)),
    ("root.h.0.mlp.c_proj", "Conv1D", *addmm(TOKENS, 4 * H, H)),
    ("root.ln_f", "LayerNorm", *LAYER_NORM),
]
GPT2_MODULES = {"root": "GPT2Model", "root.h.0": "Block", "root.h.0.attn": "Attention",
                "root.h.0.mlp": "MLP"}


def leaf_rows(tree) -> list[tuple]:
    return sorted((n.scope, n.instance_type, round(n.features["flops"] * 1e6),
                   round(n.features["mem_bytes"] * 2**20)) for n in tree.nodes() if n.is_leaf)


@pytest.fixture(scope="module")
def bert_tree():
    return trace_model(tiny_bert(), B, S, timing=False, schema="irene2021", model_name="bert")


@pytest.fixture(scope="module")
def gpt2_tree():
    return trace_model(tiny_gpt2(), B, S, timing=False, schema="irene2021", model_name="gpt2")


@pytest.mark.parametrize("which", ["bert", "gpt2"])
def test_leaves_and_their_features_match_the_hand_written_tree(which, bert_tree, gpt2_tree):
    tree, leaves, modules = {"bert": (bert_tree, BERT_LEAVES, BERT_MODULES),
                             "gpt2": (gpt2_tree, GPT2_LEAVES, GPT2_MODULES)}[which]
    assert leaf_rows(tree) == sorted(leaves)
    inner = {n.scope: n.instance_type for n in tree.nodes() if not n.is_leaf}
    assert inner == modules  # no GELU / dropout / Add nodes: they are not IrEne leaves
    assert tree.meta["schema"] == {"name": "irene2021", "version": 1}
    assert "IrEne" in tree.meta["units"]["mem_bytes"]


def test_modules_keep_the_flops_of_their_element_wise_work(bert_tree, gpt2_tree):
    nodes = {n.scope: n for n in bert_tree.nodes()}

    def total(scope: str) -> tuple[int, int]:
        node = nodes[scope]
        return round(node.features["flops"] * 1e6), round(node.features["mem_bytes"] * 2**20)

    dense = linear3d(H, INTER)
    gelu = (6 * TOKENS * INTER, 2 * TOKENS * INTER * F32)  # the activation, no node of its own
    assert total("root.encoder.layer.0.intermediate") == (dense[0] + gelu[0], dense[1] + gelu[1])
    residual = (TOKENS * H, 2 * TOKENS * H * F32)  # hidden + input, then LayerNorm
    out = linear3d(H, H)
    assert total("root.encoder.layer.0.attention.output") == (
        out[0] + residual[0] + LAYER_NORM[0], out[1] + residual[1] + LAYER_NORM[1])
    # GPT-2's MLP: the tanh-form GELU is 4 mul, pow, 2 add and a tanh per element (11 FLOPs,
    # 19 element passes), as IrEne's trees count it (2424.57 - 2415.92 MFLOP at 8x32 = 11/elem)
    mlp = next(n for n in gpt2_tree.nodes() if n.scope == "root.h.0.mlp")
    children = sum(c.features["flops"] for c in mlp.children)
    assert round((mlp.features["flops"] - children) * 1e6) == 11 * TOKENS * 4 * H
    kids_mem = sum(c.features["mem_bytes"] for c in mlp.children)
    assert round((mlp.features["mem_bytes"] - kids_mem) * 2**20) == 19 * TOKENS * 4 * H * F32
    for tree in (bert_tree, gpt2_tree):
        for node in tree.nodes():
            if not node.is_leaf:
                kids = sum(c.features["flops"] for c in node.children)
                assert node.features["flops"] >= kids - 1e-12, node.scope
        assert tree.meta["flops_counted"] == pytest.approx(tree.root.features["flops"])


def test_repeated_calls_share_irene_scope_with_distinct_ids(bert_tree):
    matmuls = [n for n in bert_tree.nodes()
               if n.scope == "root.encoder.layer.0.attention.self.matmul"]
    assert len(matmuls) == 2 and matmuls[0].id != matmuls[1].id
    ids = [n.id for n in bert_tree.nodes()]
    assert len(ids) == len(set(ids))


def test_parameters_are_the_modules_own(bert_tree):
    model = tiny_bert()
    assert bert_tree.root.features["num_parameters"] == sum(p.numel() for p in model.parameters())
    query = next(n for n in bert_tree.nodes() if n.scope.endswith("self.query"))
    assert query.features["num_parameters"] == H * H + H


def test_default_schema_unchanged_and_recorded():
    tree = trace_model(tiny_bert(), B, S, timing=False)
    assert tree.meta["schema"] == {"name": "irene", "version": 1}
    types = {n.instance_type for n in tree.nodes() if n.is_leaf}
    assert {"Add", "GELUActivation"} <= types


def test_call_cost_table():
    import torch

    x = torch.zeros(3, 5)
    assert irene2021_call_cost("mul", (x, 2.0), {}, x) == (15, 3 * 15 * 4)
    assert irene2021_call_cost("add_", (x, x), {}, x) == (15, 2 * 15 * 4)
    assert irene2021_call_cost("div_", (x, 2.0), {}, x) == (0, 0)  # IrEne did not count it
    assert irene2021_call_cost("exp", (x,), {}, x) == (0, 0)
    assert trace_rules("irene2021") is IRENE2021
    with pytest.raises(ValueError, match="known: irene, irene2021"):
        trace_rules("nope")


def test_cli_schema_flag(tmp_path, capsys):
    directory = tmp_path / "tiny"
    tiny_gpt2().config.save_pretrained(directory)
    out = tmp_path / "t.jsonl"
    assert main(["trace", str(directory), "--batch-size", "2", "--seq-len", "8", "--no-timing",
                 "--offline", "--schema", "irene2021", "-o", str(out)]) == 0
    [tree] = read_trees(out)
    assert tree.meta["schema"]["name"] == "irene2021"
    assert [r[1:] for r in leaf_rows(tree)] == [r[1:] for r in sorted(GPT2_LEAVES)]
    bad = tmp_path / "bad.jsonl"
    with pytest.raises(SystemExit) as exit_:  # argparse: exit status 2, one usage line
        main(["trace", str(directory), "--no-timing", "--offline", "--schema", "irene2022",
              "-o", str(bad)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "--schema" in err and "irene2022" in err and "irene2021" in err
    assert not bad.exists()
    assert main(["trace", str(directory), "--no-timing", "--offline", "--schema", "irene2021",
                 "--attn", "sdpa", "-o", str(bad)]) == 2
    assert "eager attention only" in capsys.readouterr().err
    assert not bad.exists()


def test_timed_trace_replays_every_irene2021_node():
    from irene.measure import Protocol

    tree = trace_model(tiny_gpt2(), B, S, schema="irene2021",
                       protocol=Protocol(warmup=0, runs=1, min_run_seconds=0.0))
    assert tree.meta["traced_on"] == "cpu"
    assert all(n.features["times_mean"] > 0 for n in tree.nodes())
    assert leaf_rows(tree) == sorted(GPT2_LEAVES)
