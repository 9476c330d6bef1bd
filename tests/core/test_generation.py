"""Generation estimates: the decode-sum rule, and the whole path end to end on a tiny Llama whose
prefill/decode data set is traced in the test with the simulated meter (no download)."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import transformers as T
from support.models import bert_config, llama_config

from irene.cli import main
from irene.estimate import estimate_tree
from irene.features import FlatForest, tree_level_value
from irene.generation import (
    composite_weights,
    decode_context_lens,
    estimate_generation,
    linear_weights,
    phase_notes,
    refine_decode_sum,
    sum_weights,
)
from irene.model import IreneRegressor
from irene.schema import feature_names
from irene.tracing import trace_model
from irene.tree import read_trees

SIMULATED = ["--meter", "simulated", "--runs", "1", "--warmup", "0", "--min-run-seconds",
             "0.0005"]


# -- the decode-sum rule -------------------------------------------------------------------------


@pytest.mark.parametrize("first, count", [(512, 256), (7, 5), (1, 1000), (100, 4)])
@pytest.mark.parametrize("segments", [1, 2, 8])
def test_composite_rule_is_exact_for_quadratics(first, count, segments):
    weights = composite_weights(first, count, segments)
    every = np.arange(first, first + count, dtype=float)
    lengths = np.array(list(weights), dtype=float)
    for coefficients in ([3.0], [2.0, 0.5], [1.0, -0.01, 4e-4]):
        exact = np.polyval(coefficients[::-1], every).sum()
        rule = float(np.dot(list(weights.values()), np.polyval(coefficients[::-1], lengths)))
        assert rule == pytest.approx(exact, rel=1e-9)
    assert sum(weights.values()) == pytest.approx(count)
    assert len(weights) == min(count, 2 * segments + 1)


def test_sum_weights_of_three_points_sum_a_quadratic_over_the_integers():
    weights = sum_weights([0, 5, 10], 0, 11)
    assert weights == pytest.approx([2.2, 6.6, 2.2])
    assert float(np.dot(weights, [0, 25, 100])) == pytest.approx(sum(x * x for x in range(11)))


def test_decode_context_lens_are_nested_and_cover_the_range():
    assert decode_context_lens(512, 256) == [512, 640, 767]
    assert decode_context_lens(10, 2) == [10, 11]  # every step when there are few
    assert decode_context_lens(10, 100, 2) == [10, 35, 60, 84, 109]
    for segments in (1, 2, 4):
        coarse = set(decode_context_lens(37, 500, segments))
        assert coarse <= set(decode_context_lens(37, 500, 2 * segments))
    with pytest.raises(ValueError):
        decode_context_lens(0, 10)


def test_linear_weights_sum_straight_lines_between_the_points():
    weights = linear_weights([10, 20, 30], 10, 21)
    assert sum(weights.values()) == pytest.approx(21)
    line = sum(w * (0.5 + 0.1 * x) for x, w in weights.items())
    assert line == pytest.approx(sum(0.5 + 0.1 * x for x in range(10, 31)))
    kink = {10: 0.0, 20: 10.0, 30: 0.0}  # a tent: straight lines up and down
    tent = sum(w * kink[x] for x, w in weights.items())
    assert tent == pytest.approx(sum(10 - abs(x - 20) for x in range(10, 31)))


def test_an_affine_law_needs_three_traces():
    calls = []

    def law(length: int) -> float:
        calls.append(length)
        return 2e-3 + 1e-6 * length

    rule = refine_decode_sum(law, 512, 256)
    assert calls == [512, 640, 767] and rule.segments == 1
    assert rule.total_j == pytest.approx(sum(law(x) for x in range(512, 768)))
    assert rule.error_j == pytest.approx(0, abs=1e-15)


@pytest.mark.parametrize("law", [
    lambda x: 1e-3 + 2e-6 * x + 3e-4 * math.sqrt(x),  # affine + concave
    lambda x: 1e-3 * x**0.3,  # what a log-space leaf fit makes of a context length
    lambda x: 1e-3 + 1e-4 * math.log(x),
])
def test_a_curved_law_is_refined_until_it_settles(law):
    """Far from affine over a wide range (a short prompt, many tokens): the rule halves its
    segments, reusing every trace, until it agrees with straight lines through the same points
    within the tolerance; the difference left over is a safe-side error estimate."""
    calls = []

    def energy_at(length: int) -> float:
        calls.append(length)
        return law(length)

    first, count = 8, 400
    exact = sum(law(x) for x in range(first, first + count))
    rule = refine_decode_sum(energy_at, first, count, tolerance_pct=0.1)
    assert len(calls) == len(set(calls)) == len(rule.weights) > 3  # no length traced twice
    assert abs(rule.total_j - exact) / exact < 5e-4
    assert rule.error_j > abs(rule.total_j - exact)  # on the safe side
    coarse = refine_decode_sum(law, first, count, tolerance_pct=50)
    assert len(coarse.weights) == 3
    assert abs(coarse.total_j - exact) > abs(rule.total_j - exact)
    capped = refine_decode_sum(law, first, count, tolerance_pct=1e-9, max_points=9)
    assert len(capped.weights) == 9


def test_every_step_is_traced_when_there_are_few():
    rule = refine_decode_sum(lambda length: float(length), 20, 3)
    assert rule.exact and rule.total_j == 20 + 21 + 22 and rule.error_j == 0


# -- features ------------------------------------------------------------------------------------


def tiny_llama_config() -> T.LlamaConfig:
    return llama_config(max_position_embeddings=96)


def test_phase_and_context_are_tree_level_features():
    model = T.AutoModel.from_config(tiny_llama_config())
    trees = [trace_model(model, 2, 6, timing=False),
             trace_model(model, 2, 6, timing=False, phase="prefill"),
             trace_model(model, 2, 1, timing=False, phase="decode", context_len=30)]
    assert [tree_level_value(t, "phase") for t in trees] == [0.0, 1.0, 2.0]
    assert [tree_level_value(t, "context_len") for t in trees] == [0.0, 0.0, 30.0]
    names = feature_names(["model_specs", "generation"])
    assert names[-4:] == ["phase", "context_len", "num_parameters", "input_size"]
    flat = FlatForest.from_trees(trees, names)
    decode_rows = flat.x[-len(list(trees[2].nodes())):]
    assert (decode_rows[:, names.index("context_len")] == 30).all()
    assert (decode_rows[:, names.index("seq_len")] == 1).all()
    trees[0].meta["phase"] = "sampling"
    with pytest.raises(ValueError, match="unknown phase 'sampling'"):
        tree_level_value(trees[0], "phase")


# -- end to end with the simulated meter ---------------------------------------------------------


@pytest.fixture(scope="module")
def generation_setup(tmp_path_factory):
    """A tiny Llama config on disk, its generation data set measured with the simulated meter
    (forward, prefill and decode trees), and a structure-only predictor trained on it."""
    root = tmp_path_factory.mktemp("generation")
    model_dir = root / "tiny-llama"
    tiny_llama_config().save_pretrained(model_dir)
    data = root / "data.jsonl"
    common = ["--offline", "-o", str(data), *SIMULATED]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["trace", str(model_dir), "--batch-sizes", "1,2", "--seq-lens", "4,16",
                     *common]) == 0
        assert main(["trace", str(model_dir), "--phase", "prefill", "--batch-sizes", "1,2",
                     "--seq-lens", "4,16", *common]) == 0
        assert main(["trace", str(model_dir), "--phase", "decode", "--batch-sizes", "1,2",
                     "--context-lens", "4,24,60", *common]) == 0
        predictor = root / "predictor"
        assert main(["train", str(data), str(predictor), "--set",
                     'feature_sets=["model_specs", "generation"]', "--set", "epochs=40"]) == 0
    return model_dir, data, predictor


def test_data_set_holds_measured_trees_of_every_phase(generation_setup):
    _, data, predictor = generation_setup
    trees = read_trees(data)
    assert sorted({(t.key.phase, t.key.context_len) for t in trees}) == [
        ("decode", 4), ("decode", 24), ("decode", 60), ("forward", 0), ("prefill", 0)]
    assert len(trees) == 4 + 4 + 6
    for tree in trees:
        assert tree.meta["meter"] == "simulated"
        assert all(n.ground_truth_energy and n.ground_truth_energy > 0 for n in tree.nodes())
    loaded = IreneRegressor.load(str(predictor))
    assert loaded.training_data.phases == ["decode", "forward", "prefill"]
    assert {"phase", "context_len"} <= set(loaded.required_features())
    assert phase_notes(loaded) == []


@pytest.mark.parametrize("leaf_fit", ["saved", "log"])
def test_decode_sum_matches_every_step_within_one_percent(generation_setup, leaf_fit):
    """The saved predictor (linear leaves: nearly affine in the context length) and one with
    log-space leaves (a power law in it) against the sum of every step's prediction."""
    model_dir, data, predictor_dir = generation_setup
    if leaf_fit == "saved":
        predictor = IreneRegressor.load(str(predictor_dir))
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            predictor = IreneRegressor(feature_sets=["model_specs", "generation"], epochs=40,
                                       leaf_fit="log").fit(read_trees(data))
    prompt, new, batch = 8, 40, 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        estimate = estimate_generation(str(model_dir), predictor, prompt_len=prompt,
                                       new_tokens=new, batch_size=batch, progress=False,
                                       hub=False, warn=lambda text: None)
        model = T.AutoModel.from_config(tiny_llama_config())
        steps = [estimate_tree(model, batch, 1, predictor, progress=False, hub=False,
                               warn=lambda text: None, phase="decode", context_len=length)
                 for length in range(prompt, prompt + new)]
    exact = sum(t.root.predicted_energy for t in steps)
    assert {8, 28, 47} <= set(estimate.context_lens)
    assert abs(estimate.decode_j - exact) / exact < 0.01
    assert estimate.sum_error_j < 0.01 * exact
    # the same holds node by node: the decode tree's attention is the sum of every step's
    scope = "root.layers.1.self_attn"
    per_step = sum(next(n for n in t.nodes() if n.scope == scope).predicted_energy
                   for t in steps)
    summed = next(n for n in estimate.decode.nodes() if n.scope == scope).predicted_energy
    assert abs(summed - per_step) / per_step < 0.01
    assert estimate.total_j == pytest.approx(estimate.prefill_j + estimate.decode_j)
    assert estimate.per_generated_token_j == pytest.approx(estimate.total_j / (batch * new))
    # the work features of the decode tree are the sums over the steps too
    flops = sum(t.root.features["flops"] for t in steps)
    assert estimate.decode.root.features["flops"] == pytest.approx(flops, rel=1e-9)


def test_estimate_cli_json_html_plot_and_trees(generation_setup, tmp_path, capsys):
    model_dir, _, predictor = generation_setup
    out, page, figure = tmp_path / "gen.jsonl", tmp_path / "gen.html", tmp_path / "gen.png"
    code = main(["estimate", str(model_dir), "--prompt-len", "8", "--new-tokens", "30",
                 "--batch-size", "2", "--predictor", str(predictor), "--offline", "--json",
                 "--depth", "1", "-o", str(out), "--html", str(page), "--plot", str(figure)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    data = json.loads(captured.out)
    energy = data["energy_j"]
    assert energy["total"] == pytest.approx(energy["prefill"] + energy["decode"])
    assert data["per_token_j"]["generated"] == pytest.approx(energy["total"] / 60)
    assert data["generated_tokens"] == 60
    traced = data["decode_sum"]["traced"]
    assert {8, 22, 37} <= {t["context_len"] for t in traced}
    assert sum(t["weight"] for t in traced) == pytest.approx(30)
    assert data["decode_sum"]["error_estimate_pct"] < 0.1
    assert data["phases"]["decode"]["total_j"] == pytest.approx(energy["decode"])
    assert data["phases"]["prefill"]["total_j"] == pytest.approx(energy["prefill"])
    trees = read_trees(out)
    assert [(t.key.phase, t.key.context_len) for t in trees] == [("prefill", 0)] + [
        ("decode", t["context_len"]) for t in traced]
    assert all(n.predicted_energy > 0 for t in trees for n in t.nodes())
    text = page.read_text()
    assert "Generation: 2 × (8-token prompt + 30 new tokens)" in text
    assert "decode, 30 steps @ context 8…37" in text and "SYNTHETIC" in text
    assert figure.stat().st_size > 10_000


def test_estimate_cli_prints_phases_and_each_breakdown(generation_setup, capsys):
    model_dir, _, predictor = generation_setup
    assert main(["estimate", str(model_dir), "--prompt-len", "6", "--new-tokens", "2",
                 "--predictor", str(predictor), "--offline", "--depth", "1"]) == 0
    text = capsys.readouterr().out
    assert "prefill" in text and "/ prompt token" in text and "/ new token" in text
    assert "decode = 2 steps; every step traced" in text
    assert "for all 2 decode steps" in text and "per prefill" in text


@pytest.mark.parametrize("argv, message", [
    (["--prompt-len", "8"], "needs both --prompt-len and --new-tokens"),
    (["--prompt-len", "8", "--new-tokens", "4", "--seq-len", "8"], "--seq-len is for one"),
    (["--prompt-len", "90", "--new-tokens", "10"], "exceeds its 96 positions"),
    (["--batch-size", "2"], "give --batch-size and --seq-len"),
    (["--prompt-len", "8", "--new-tokens", "4", "--plot", "x.pdf"], ".png or .svg"),
])
def test_estimate_cli_refuses_bad_generation_input(generation_setup, argv, message, capsys):
    model_dir, _, predictor = generation_setup
    assert main(["estimate", str(model_dir), "--predictor", str(predictor), "--offline",
                 *argv]) == 2
    assert message in capsys.readouterr().err


def test_estimate_cli_refuses_an_encoder(generation_setup, tmp_path, capsys):
    _, _, predictor = generation_setup
    bert = tmp_path / "bert"
    bert_config(num_hidden_layers=1).save_pretrained(bert)
    assert main(["estimate", str(bert), "--prompt-len", "8", "--new-tokens", "4",
                 "--predictor", str(predictor), "--offline"]) == 2
    assert "decoder-only" in capsys.readouterr().err


def test_a_forward_only_predictor_is_flagged(generation_setup):
    _, data, _ = generation_setup
    forward = [t for t in read_trees(data) if t.key.phase == "forward"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = IreneRegressor(feature_sets=["model_specs"], epochs=5).fit(forward)
    (note,) = phase_notes(model)
    assert "forward trees only" in note and "prefill and decode" in note


def test_report_and_plot_show_decode_energy_per_token(generation_setup, tmp_path, capsys):
    _, data, _ = generation_setup
    page = tmp_path / "report.html"
    assert main(["report", str(data), "-o", str(page)]) == 0
    text = page.read_text()
    assert "Decode: energy per generated token against context length" in text
    assert "prefill of 16 tokens" in text
    assert main(["plot", str(data), "-o", str(tmp_path / "figures")]) == 0
    written = capsys.readouterr().out
    assert "decode_energy_per_token.png" in written and "energy_vs_seq_len.png" in written
