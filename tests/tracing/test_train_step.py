"""Training-step trees (forward, backward, optimiser) on tiny BERT / GPT-2 / Llama configs built in
the test: FLOPs against hand formulas, the backward attribution, the optimiser node, replays,
round trip, a predictor trained on them, and the CLI."""

from __future__ import annotations

import json
import math
import warnings

import pytest
import torch
import transformers as T
from support.models import HEADS, INTER, LAYERS, VOCAB, bert_config, gpt2_config, llama_config
from support.models import HIDDEN as H
from support.trees import synthetic_energy

from irene.cli import main
from irene.measure import Protocol, SimulatedMeter
from irene.model import IreneRegressor
from irene.tracing.optimizers import OPTIMIZERS
from irene.tracing.train_replay import BackwardReplay, recorded_call
from irene.tracing.train_step import (
    build_training_model,
    run_step,
    step_inputs,
    trace_train_step,
)
from irene.tree import read_trees, write_trees

B, S = 2, 8
FAST = Protocol(warmup=0, runs=1, min_run_seconds=0.0)


@pytest.fixture(scope="module")
def bert_step():
    return trace_train_step(bert_config(), B, S, timing=False, model_name="tiny-bert")


@pytest.fixture(scope="module")
def gpt2_step():
    return trace_train_step(gpt2_config(), B, S, timing=False, model_name="tiny-gpt2")


def by_scope(tree):
    return {n.scope: n for n in tree.nodes()}


def flops(node) -> float:
    """A node's FLOPs (the tree stores MFLOP)."""
    return node.features["flops"] * 1e6


def parameters_of(config) -> tuple[int, int]:
    """(elements, tensors) of the distinct parameters of the model with its LM head."""
    model = build_training_model(config, device="meta")
    params = list(model.parameters())
    return sum(p.numel() for p in params), len(params)


# -- the tree -----------------------------------------------------------------------------------

def test_step_tree_layout_and_key(bert_step):
    root = bert_step.root
    assert (root.scope, root.type, root.instance_type) == ("step", "model", "TrainingStep")
    assert [(c.scope, c.type) for c in root.children] == [
        ("forward", "module"), ("backward", "module"), ("optimizer", "module")]
    assert root.children[0].instance_type == "BertForMaskedLM"
    assert root.children[2].instance_type == "AdamW"
    nodes = by_scope(bert_step)
    query = "bert.encoder.layer.0.attention.self.query"
    assert nodes[f"forward.{query}"].instance_type == "Linear"
    assert nodes[f"backward.{query}"].instance_type == "LinearBackward"
    assert nodes[f"optimizer.{query}.weight"].instance_type == "AdamWUpdate"
    assert nodes[f"optimizer.{query}"].instance_type == "Linear"
    assert nodes["forward.cross_entropy"].instance_type == "CrossEntropy"  # the loss is a leaf
    for child in root.children:
        assert all(n.extra["pass"] == child.scope for n in child.walk())
    key = bert_step.key
    assert (key.phase, key.optimizer, key.device, key.meter) == ("train", "adamw", "cpu", "none")
    assert bert_step.meta["phase"] == "train" and bert_step.meta["optimizer"] == "adamw"
    assert "per training step" in bert_step.meta["units"]["flops"]
    assert "masked-LM" in bert_step.meta["train_step"]["loss"]


def test_every_flop_counted_lands_in_one_leaf(bert_step, gpt2_step):
    for tree in (bert_step, gpt2_step):
        leaves = [n for n in tree.nodes() if n.is_leaf]
        assert math.isclose(sum(flops(n) for n in leaves), flops(tree.root), rel_tol=1e-12)
        counted = tree.meta["train_step"]["flops_counted"]
        assert tree.meta["train_step"]["backward_unattributed_flops"] == 0
        for name, child in zip(("forward", "backward", "optimizer"), tree.root.children,
                               strict=True):
            assert child.features["flops"] == pytest.approx(counted[name], rel=1e-12), name
        for node in tree.nodes():
            if not node.is_leaf:
                assert math.isclose(sum(flops(c) for c in node.children), flops(node),
                                    rel_tol=1e-9, abs_tol=1e-6)


def linear_shapes(node) -> tuple[int, int, int]:
    """(rows, inputs, outputs) of a Linear / Conv1D leaf from its recorded shapes."""
    out = node.extra["output_shapes"][0]
    rows = math.prod(out[:-1])
    n_in = node.extra["input_shapes"][0][-1]
    return rows, n_in, out[-1]


@pytest.mark.parametrize("fixture", ["bert_step", "gpt2_step"])
def test_linear_backward_is_twice_its_matmul_plus_the_bias_gradient(fixture, request):
    """Weight and input gradients are one matmul each (2 x the forward's); the bias gradient
    sums the output gradient over the rows (1 per output element)."""
    tree = request.getfixturevalue(fixture)
    nodes = by_scope(tree)
    checked = 0
    for node in tree.nodes():
        if node.extra.get("pass") != "forward" or node.instance_type not in ("Linear", "Conv1D"):
            continue
        rows, n_in, n_out = linear_shapes(node)
        matmul = 2 * rows * n_in * n_out
        bias = rows * n_out if node.features["num_parameters"] == (n_in + 1) * n_out else 0
        assert flops(node) == matmul + bias, node.scope  # forward: matmul + bias
        backward = nodes["backward" + node.scope[len("forward"):]]
        assert flops(backward) == 2 * matmul + bias, backward.scope
        checked += 1
    assert checked >= 4 * LAYERS


def test_bias_free_linear_backward_is_exactly_twice_forward():
    tree = trace_train_step(llama_config(), B, S, timing=False)
    pairs = [(n, by_scope(tree)["backward" + n.scope[len("forward"):]]) for n in tree.nodes()
             if n.extra.get("pass") == "forward" and n.instance_type == "Linear"]
    assert len(pairs) >= 7 * LAYERS
    for forward, backward in pairs:
        assert flops(backward) == 2 * flops(forward), forward.scope


def bert_mlm_step_flops(batch: int, seq: int, hidden: int, layers: int, inter: int, heads: int,
                        vocab: int, params: int, tensors: int) -> tuple[int, int, int]:
    """(forward, backward, AdamW) FLOPs of one BertForMaskedLM training step by hand (eager
    attention, no mask; conventions of irene.tracing.flops and irene.tracing.backward_flops)."""
    tokens = batch * seq
    scores = batch * heads * seq * seq

    def linear(n_in: int, n_out: int) -> int:
        return 2 * tokens * n_in * n_out + tokens * n_out

    def linear_backward(n_in: int, n_out: int) -> int:  # input + weight gradients, bias sum
        return 4 * tokens * n_in * n_out + tokens * n_out

    norm, norm_backward = 7 * tokens * hidden, 13 * tokens * hidden
    forward = (
        2 * tokens * hidden + norm  # embeddings: two adds, LayerNorm
        + layers * (4 * linear(hidden, hidden) + 2 * 2 * tokens * seq * hidden  # QKV, out; QK, PV
                    + scores + 5 * scores  # scale, softmax
                    + tokens * hidden + norm  # residual, LayerNorm
                    + linear(hidden, inter) + 5 * tokens * inter + linear(inter, hidden)  # MLP
                    + tokens * hidden + norm)
        + linear(hidden, hidden) + 5 * tokens * hidden + norm  # head transform
        + linear(hidden, vocab)  # decoder
        + 5 * tokens * vocab + tokens)  # cross-entropy: log-softmax, NLL
    backward = (
        tokens + 4 * tokens * vocab  # NLL 1 per target, log-softmax 4 per logit
        + linear_backward(hidden, vocab) + linear_backward(hidden, hidden)
        + 11 * tokens * hidden + norm_backward  # head: decoder, dense, GELU, LayerNorm
        + layers * (4 * linear_backward(hidden, hidden)
                    + 2 * 4 * tokens * seq * hidden  # QK and PV: both operands' gradients
                    + scores + 4 * scores  # scale, softmax
                    + norm_backward
                    + linear_backward(hidden, inter) + 11 * tokens * inter
                    + linear_backward(inter, hidden) + norm_backward
                    # gradient sums: a layer's input feeds Q, K, V and the residual (3 adds),
                    # the attention output feeds the MLP and the residual (1 add)
                    + 4 * tokens * hidden)
        + norm_backward  # embeddings LayerNorm
        + tokens * hidden  # the position embedding's broadcast add: sum over the batch
        + tokens * hidden + seq * hidden + tokens * hidden  # word, position, type look-ups
        + vocab * hidden)  # tied word embedding: its two weight gradients summed
    return forward, backward, 11 * params + tensors


def test_bert_step_flops_match_hand_formula(bert_step):
    params, tensors = parameters_of(bert_config())
    forward, backward, optimizer = bert_mlm_step_flops(B, S, H, LAYERS, INTER, HEADS, VOCAB,
                                                      params, tensors)
    passes = {c.scope: c for c in bert_step.root.children}
    assert flops(passes["forward"]) == pytest.approx(forward, rel=1e-12)
    assert flops(passes["backward"]) == pytest.approx(backward, rel=1e-12)
    assert flops(passes["optimizer"]) == pytest.approx(optimizer, rel=1e-12)
    assert flops(bert_step.root) == pytest.approx(forward + backward + optimizer, rel=1e-12)


def test_gradient_sums_are_paid_by_the_producer_or_by_one_consumer(bert_step, gpt2_step):
    nodes = by_scope(bert_step)
    tokens = B * S
    # the embeddings' LayerNorm output feeds layer 0's query, key, value and residual
    ln = nodes["backward.bert.embeddings.LayerNorm"]
    assert flops(ln) == 13 * tokens * H + 3 * tokens * H
    # GPT-2's gelu_new uses its input three times: those sums are the activation's own
    act = by_scope(gpt2_step)["backward.transformer.h.0.mlp.act"]
    fc = by_scope(gpt2_step)["backward.transformer.h.0.mlp.c_fc"]
    inner = 4 * H  # GPT-2's default MLP width
    assert flops(fc) == 4 * tokens * H * inner + tokens * inner
    assert flops(act) > 0


# -- the optimiser ------------------------------------------------------------------------------

@pytest.mark.parametrize("name, per_element, per_tensor, state_bytes", [
    ("adamw", 11, 1, 8),  # decay 1, moments 2 + 3, denominator 3, update 2; exp_avg, exp_avg_sq
    ("sgd", 3, 0, 4),     # momentum buffer 2, update 1; the momentum buffer
])
def test_optimizer_node_against_parameter_counts(name, per_element, per_tensor, state_bytes):
    config = gpt2_config()
    tree = trace_train_step(config, B, S, timing=False, optimizer=name)
    params, tensors = parameters_of(config)  # tied lm_head / wte counted once
    node = tree.root.children[2]
    assert node.instance_type == OPTIMIZERS[name].label
    assert node.features["num_parameters"] == params
    leaves = [n for n in node.walk() if n.is_leaf]
    assert len(leaves) == tensors
    assert flops(node) == per_element * params + per_tensor * tensors
    assert OPTIMIZERS[name].expected_flops(params, tensors) == flops(node)
    # bytes: parameter + gradient + optimiser state (+ AdamW's 4-byte step counter per tensor)
    step_counter = 4 * tensors if name == "adamw" else 0
    assert node.features["mem_bytes"] * 2**20 == pytest.approx(
        (8 + state_bytes) * params + step_counter)
    for leaf in leaves:
        n = leaf.features["num_parameters"]
        assert flops(leaf) == per_element * n + per_tensor
    assert tree.meta["optimizer"] == name


# -- replays ------------------------------------------------------------------------------------

def test_backward_replay_recomputes_the_gradients_of_the_step():
    """A leaf's replay (forward recomputed on its recorded inputs, autograd.grad with the
    recorded output gradient) gives the gradients the real step computed."""
    model = build_training_model(bert_config())
    st = run_step(model, step_inputs(model, B, S), OPTIMIZERS["adamw"], record_inputs=True,
                  dedup=True)
    query = next(r for r in st.forward.walk() if r.scope.endswith("layer.0.attention.self.query"))
    replay = BackwardReplay(query, st.capture.grad_flags[id(query)],
                            st.capture.output_grads[id(query)])
    replay.prepare()
    outputs, grads, targets = replay._graph
    module, _, _ = recorded_call(query)
    assert list(targets[1:]) == list(module.parameters())  # the input, then weight and bias
    recomputed = torch.autograd.grad(outputs, targets, grads, retain_graph=True)
    assert torch.allclose(recomputed[1], module.weight.grad, atol=1e-6)
    assert torch.allclose(recomputed[2], module.bias.grad, atol=1e-6)
    replay()  # a timed call runs
    replay.release()
    assert replay._graph is None


@pytest.mark.parametrize("config", [bert_config, llama_config])
def test_timed_step_replays_every_node_with_a_meter(config):
    tree = trace_train_step(config(), B, S, protocol=FAST, meter=SimulatedMeter(power_w=10.0),
                            optimizer="sgd")
    for node in tree.nodes():
        assert node.features["times_mean"] > 0, node.scope
        assert node.ground_truth_energy is not None and node.ground_truth_energy > 0, node.scope
    assert tree.meta["meter"] == "simulated" and tree.meta["dedup"]["hits"] > 0
    # identical layers: the second layer's backward nodes are measured once (cache hits)
    nodes = by_scope(tree)
    layer = "backward.bert.encoder.layer" if config is bert_config else "backward.model.layers"
    assert nodes[f"{layer}.0"].features["times_mean"] == nodes[f"{layer}.1"].features[
        "times_mean"]
    if config is llama_config:  # eager GQA: repeat_kv's expand has a summing gradient
        others = [n for n in tree.nodes() if n.instance_type == "OtherBackward"]
        assert len(others) == LAYERS and all(flops(n) > 0 for n in others)


def test_features_only_and_timed_steps_count_the_same_flops(bert_step):
    timed = trace_train_step(bert_config(), B, S, protocol=FAST, model_name="tiny-bert")
    assert [n.scope for n in timed.nodes()] == [n.scope for n in bert_step.nodes()]
    assert [n.features["flops"] for n in timed.nodes()] == \
        [n.features["flops"] for n in bert_step.nodes()]
    assert bert_step.meta["features_available"] == ["num_parameters", "flops", "mem_bytes"]


# -- round trip and prediction ------------------------------------------------------------------



def test_step_tree_round_trips_and_trains_a_predictor(bert_step, tmp_path):
    path = tmp_path / "steps.jsonl"
    trees = [trace_train_step(bert_config(), b, s, timing=False, model_name="tiny-bert")
             for b, s in ((1, 8), (2, 16), (4, 32), (3, 24))]
    for tree in trees:
        synthetic_energy(tree)
    write_trees(trees, path)
    back = read_trees(path)
    assert [t.to_dict() for t in back] == [t.to_dict() for t in trees]
    assert len({t.key for t in back}) == 4 and back[0].key == trees[0].key
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = IreneRegressor(feature_sets=["model_specs"], epochs=30).fit(back[:3])
    [predicted] = model.predict(back[3:])
    truth = back[3].root.ground_truth_energy
    assert predicted.root.predicted_energy == pytest.approx(truth, rel=0.1)
    for child in predicted.root.children:
        assert child.predicted_energy == pytest.approx(child.ground_truth_energy, rel=0.2)


def test_measured_step_trees_train_a_predictor():
    """Trees whose every node carries a meter reading (here the simulated meter's) train a
    predictor like inference trees do."""
    trees = [trace_train_step(bert_config(), b, s, protocol=FAST, meter=SimulatedMeter(10.0),
                              model_name="tiny-bert")
             for b, s in ((1, 8), (4, 8), (1, 16), (4, 16), (2, 12))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = IreneRegressor(feature_sets=["model_specs"], epochs=10).fit(trees[:4])
    [predicted] = model.predict(trees[4:])
    assert all(n.predicted_energy is not None and n.predicted_energy > 0
               for n in predicted.nodes())
    assert all(n.ground_truth_energy > 0 for n in predicted.nodes())
    assert predicted.meta["predictor"]["trained_on"]["meter"] == ["simulated"]


# -- environment --------------------------------------------------------------------------------

def test_every_tree_records_where_it_was_measured(bert_step):
    from irene.tracing import trace_model

    forward = trace_model(T.AutoModel.from_config(bert_config()), B, S, timing=False)
    for tree in (bert_step, forward):
        env = tree.meta["environment"]
        assert env["host"] and env["logical_cpus"] >= 1 and env["memory_bytes"] > 2**20
        assert env["kernel"] and env["python"]


# -- CLI ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tiny-gpt2")
    gpt2_config().save_pretrained(directory)
    return directory


def test_trace_phase_train_appends_and_resumes(tiny_dir, tmp_path, capsys):
    out = tmp_path / "steps.jsonl"
    argv = ["trace", str(tiny_dir), "--phase", "train", "--no-timing", "--offline",
            "--batch-sizes", "1,2", "--seq-lens", "8", "-o", str(out)]
    assert main(argv) == 0
    assert main([*argv, "--optimizer", "sgd"]) == 0
    assert main(argv) == 0  # everything done: skipped
    assert "2 of 2 combinations already traced" in capsys.readouterr().err
    keys = [t.key for t in read_trees(out)]
    assert [(k.batch_size, k.phase, k.optimizer) for k in keys] == [
        (1, "train", "adamw"), (2, "train", "adamw"), (1, "train", "sgd"), (2, "train", "sgd")]
    assert read_trees(out)[0].root.children[0].instance_type == "GPT2LMHeadModel"


def test_cli_refuses_inconsistent_phase_options(tiny_dir, tmp_path, capsys):
    out = tmp_path / "x.jsonl"
    assert main(["trace", str(tiny_dir), "--optimizer", "sgd", "--no-timing", "--offline",
                 "-o", str(out)]) == 2
    assert "--optimizer sgd needs --phase train" in capsys.readouterr().err
    assert main(["estimate", str(tiny_dir), "--batch-size", "1", "--seq-len", "8",
                 "--predictor", str(tmp_path), "--steps", "10", "--offline"]) == 2
    assert "--steps needs --phase train" in capsys.readouterr().err
    assert main(["trace", str(tiny_dir), "--phase", "train", "--seq-len", "100",
                 "--no-timing", "--offline", "-o", str(out)]) == 2
    assert "exceeds the 64 positions" in capsys.readouterr().err
    assert not out.exists()
    with pytest.raises(SystemExit):
        main(["trace", str(tiny_dir), "--phase", "train", "--optimizer", "lion", "-o", str(out)])


def test_estimate_phase_train_splits_the_step(tiny_dir, tmp_path, capsys):
    trees = []
    for b, s in ((1, 8), (2, 16), (4, 32)):
        tree = trace_train_step(str(tiny_dir / "config.json"), b, s, timing=False)
        synthetic_energy(tree)
        trees.append(tree)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        IreneRegressor(feature_sets=["model_specs"], epochs=20).fit(trees).save(
            str(tmp_path / "predictor"))
    argv = ["estimate", str(tiny_dir), "--phase", "train", "--batch-size", "2", "--seq-len",
            "24", "--predictor", str(tmp_path / "predictor"), "--steps", "1000", "--offline"]
    page = tmp_path / "report.html"
    assert main([*argv, "--html", str(page)]) == 0
    text = capsys.readouterr().out
    assert "per training step" in text and "Forward / backward / optimiser" in text
    assert "1000 steps" in text and "transformer.h.*" in text
    assert "Training steps: forward / backward / optimiser" in page.read_text()
    assert main([*argv, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    split = data["training"]
    assert data["tree"]["phase"] == "train" and split["optimizer"] == "adamw"
    passes = split["passes"]
    assert sum(p["energy_j"] for p in passes.values()) == pytest.approx(
        sum(n["energy_j"] for n in data["nodes"] if n["depth"] == 1))
    assert split["energy_for_steps_j"] == pytest.approx(1000 * split["energy_per_step_j"])
    assert passes["backward"]["flops_share"] > passes["forward"]["flops_share"] > \
        passes["optimizer"]["flops_share"]


def test_explain_shows_the_split_of_a_measured_step(bert_step, tmp_path, capsys):
    tree = bert_step.copy()
    synthetic_energy(tree)
    write_trees([tree], tmp_path / "step.jsonl")
    assert main(["explain", str(tmp_path / "step.jsonl"), "--tree", "0", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    passes = data["training"]["passes"]
    assert set(passes) == {"forward", "backward", "optimizer"}
    assert sum(p["share"] for p in passes.values()) == pytest.approx(1 / 1.03)  # root: +3 %
    assert tree.label == "tiny-bert · batch 2 · seq 8 · train (adamw)"
    assert main(["explain", str(tmp_path / "step.jsonl"), "--tree", "0"]) == 0
    assert "Forward / backward / optimiser" in capsys.readouterr().out


@pytest.mark.gpu
def test_training_step_on_cuda_records_the_gpu():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    tree = trace_train_step(bert_config(), B, S, device="cuda", protocol=FAST, attn="sdpa")
    assert all(n.features["times_mean"] > 0 for n in tree.nodes())
    assert tree.meta["environment"]["gpu_name"] == torch.cuda.get_device_name(0)
    assert tree.meta["train_step"]["backward_unattributed_flops"] == 0


def test_frozen_parameters_of_a_given_model_stay_frozen():
    model = T.AutoModelForCausalLM.from_config(gpt2_config())
    model.transformer.wte.requires_grad_(False)  # frozen (and tied to lm_head)
    model.transformer.wpe.requires_grad_(False)
    tree = trace_train_step(model, B, S, timing=False, optimizer="sgd")
    nodes = by_scope(tree)
    frozen = VOCAB * H + 64 * H
    assert tree.root.features["num_parameters"] == sum(p.numel() for p in model.parameters())
    assert nodes["optimizer"].features["num_parameters"] == \
        tree.root.features["num_parameters"] - frozen
    assert "optimizer.transformer.wte.weight" not in nodes
    assert "backward.transformer.wte" not in nodes  # no gradient to compute for a look-up
    assert not model.transformer.wte.weight.requires_grad
