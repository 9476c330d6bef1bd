"""``irene estimate`` end to end: a tiny local config, traced here, predicted by a predictor
trained in the test on synthetic energies; and the refusal to predict from missing features."""

from __future__ import annotations

import json
import warnings

import pytest
from support.trees import bert_like_tree, synthetic_energy

from irene.cli import main
from irene.estimate import unsupplied_features, zero_features
from irene.model import IreneRegressor
from irene.tracing import trace_model
from irene.tree import read_trees

TINY = {"model_type": "bert", "vocab_size": 128, "hidden_size": 32, "num_hidden_layers": 2,
        "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 64,
        "type_vocab_size": 2}




@pytest.fixture(scope="module")
def tiny_setup(tmp_path_factory):
    """A config.json on disk and a predictor (model_specs features) trained on its traces."""
    root = tmp_path_factory.mktemp("estimate")
    config = root / "tiny" / "config.json"
    config.parent.mkdir()
    config.write_text(json.dumps(TINY))
    training = []
    for batch_size, seq_len in ((1, 8), (2, 16), (4, 32)):
        tree = trace_model(str(config), batch_size, seq_len, timing=False)
        synthetic_energy(tree)
        training.append(tree)
    predictor_dir = root / "predictor"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = IreneRegressor(feature_sets=["model_specs"], epochs=20)
        model.fit(training)
    model.save(str(predictor_dir))
    return config, predictor_dir


def test_estimate_traces_predicts_and_explains_a_local_config(tiny_setup, tmp_path, capsys):
    config, predictor_dir = tiny_setup
    out, page = tmp_path / "pred.jsonl", tmp_path / "report.html"
    code = main(["estimate", str(config), "--batch-size", "2", "--seq-len", "24",
                 "--predictor", str(predictor_dir), "--top", "3", "-o", str(out),
                 "--html", str(page)])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "explaining: predicted energy" in text and "Top 3 primitives" in text
    assert "encoder" in text and "by primitive type:" in text
    (tree,) = read_trees(out)
    assert (tree.batch_size, tree.seq_len) == (2, 24)
    assert all(node.predicted_energy is not None for node in tree.nodes())
    synthetic_energy(tree)  # the formula's energy for this unseen shape, beside the prediction
    assert tree.root.predicted_energy == pytest.approx(tree.root.ground_truth_energy, rel=0.25)
    assert "encoder" in page.read_text()


def test_estimate_refuses_a_predictor_that_needs_gpu_features_on_cpu(tmp_path, capsys):
    trees = [bert_like_tree(layers=1, hidden=32, batch_size=b, seq_len=s, predicted=False,
                            seed=b + s) for b in (1, 2) for s in (8, 16)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = IreneRegressor(
            feature_sets=["model_specs", "resource_utilization"], epochs=2).fit(trees)
    model.save(str(tmp_path / "gpu_predictor"))
    code = main(["estimate", "bert-base-uncased", "--batch-size", "1", "--seq-len", "8",
                 "--predictor", str(tmp_path / "gpu_predictor")])
    err = capsys.readouterr().err
    assert code == 2
    assert "cannot supply" in err and "gpu_clk" in err and "needs a CUDA device" in err
    assert "model_specs" in err


def test_estimate_names_a_missing_predictor_directory(tmp_path, capsys):
    assert main(["estimate", "bert-base-uncased", "--batch-size", "1", "--seq-len", "8",
                 "--predictor", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_unsupplied_and_zero_features():
    required = ["batch_size", "flops", "times_mean", "gpu", "gpu_energy_mean"]
    assert set(unsupplied_features(required, "cpu")) == {"gpu", "gpu_energy_mean"}
    # on a CUDA device the NVML sampler supplies GPU utilisation, clocks and power x time: the
    # same rule the tracer's metadata uses (irene.schema.supplied_features)
    assert unsupplied_features(required, "cuda:0") == {}
    assert unsupplied_features(["flops", "mem_bytes", "num_parameters"], "cpu") == {}
    tree = bert_like_tree(layers=1)
    assert zero_features(tree, ["flops", "gpu_clk", "batch_size", "times_mean"]) == ["gpu_clk"]
