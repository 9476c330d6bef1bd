"""train / predict / evaluate / crossvalidate, as `irene <cmd>` and as IrEne's scripts."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from support.paths import ROOT

from irene.cli import main
from irene.datasets import is_synthetic
from irene.synthetic import DEFAULT_ARCHS, make_synthetic_trees
from irene.tree import read_trees, write_trees


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "trees.jsonl"
    write_trees(make_synthetic_trees(DEFAULT_ARCHS[:3], batch_sizes=(1, 8), seq_lens=(32, 128),
                                     noise=0.005), path)
    return path


def test_train_predict_evaluate_round_trip(data, tmp_path, capsys):
    assert main(["train", str(data), str(tmp_path / "model"), "--set", "epochs=20"]) == 0
    assert "SYNTHETIC" in capsys.readouterr().err
    out = tmp_path / "pred.jsonl"
    assert main(["predict", str(data), str(out), str(tmp_path / "model")]) == 0
    predicted = read_trees(out)
    assert all(n.predicted_energy > 0 for t in predicted for n in t.nodes())
    # predictions from a predictor trained on synthetic data stay labelled synthetic
    assert predicted[0].meta["predictor"]["trained_on"]["synthetic"] is True
    for tree in predicted:
        tree.meta.pop("synthetic")
    assert is_synthetic(predicted)
    capsys.readouterr()
    assert main(["evaluate", str(data), str(out), "--node_types", "ml,model", "--json"]) == 0
    errors = json.loads(capsys.readouterr().out)
    assert set(errors) == {"ml", "model"}
    assert all(0 <= v < 3.0 for v in errors.values())


def test_evaluate_refuses_a_gold_node_without_prediction(data, tmp_path, capsys):
    trees = read_trees(data)
    for tree in trees:
        for node in tree.nodes():
            node.predicted_energy = node.ground_truth_energy
    victim = trees[1].root.children[0].children[0]
    victim.predicted_energy = None
    write_trees(trees, tmp_path / "pred.jsonl")
    assert main(["evaluate", str(data), str(tmp_path / "pred.jsonl")]) == 2
    err = capsys.readouterr().err
    assert victim.scope in err and "no prediction" in err


def test_crossvalidate_writes_table_json_and_fold_predictions(data, tmp_path, capsys):
    out = tmp_path / "cv"
    code = main(["crossvalidate", str(data), str(out), "--set", "epochs=10", "--no-plots"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "SYNTHETIC DATA" in printed and "overall" in printed
    result = json.loads((out / "crossvalidation.json").read_text())
    names = {a.name for a in DEFAULT_ARCHS[:3]}
    assert set(result["per_model"]) == names
    assert set(result["overall"]) == {"ml", "module", "model"}
    assert result["synthetic_data"] is True
    for name in names:
        assert read_trees(out / "predictions" / f"{name}.jsonl")[0].model_name == name


def test_irene_scripts_keep_irene_positional_arguments(data, tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"training_strategy": "end2end", "epochs": 5}))
    run = [sys.executable, "-W", "ignore"]
    subprocess.run([*run, "train.py", str(data), str(tmp_path / "m"), "--config_filepath",
                    str(config)], cwd=ROOT, check=True, capture_output=True)
    subprocess.run([*run, "predict.py", str(data), str(tmp_path / "p.jsonl"), str(tmp_path / "m")],
                   cwd=ROOT, check=True, capture_output=True)
    done = subprocess.run([*run, "evaluate.py", str(data), str(tmp_path / "p.jsonl")], cwd=ROOT,
                          check=True, capture_output=True, text=True)
    assert set(json.loads(done.stdout)) == {"ml", "module", "model"}


def test_bad_input_exits_non_zero_and_writes_nothing(data, tmp_path, capsys):
    lines = data.read_text().splitlines()
    bad = json.loads(lines[2])
    del bad["frontend_tree"]["child_nodes_obj"][0]["flops"]
    broken = tmp_path / "broken.jsonl"
    broken.write_text("\n".join([lines[0], lines[1], json.dumps(bad)]) + "\n")
    assert main(["train", str(broken), str(tmp_path / "model")]) == 2
    err = capsys.readouterr().err
    assert f"{broken}:3" in err and "'flops'" in err
    assert not (tmp_path / "model").exists()

    main(["train", str(data), str(tmp_path / "good"), "--set", "epochs=2"])
    assert main(["predict", str(broken), str(tmp_path / "p.jsonl"), str(tmp_path / "good")]) == 2
    assert not (tmp_path / "p.jsonl").exists()
    assert main(["crossvalidate", str(broken), str(tmp_path / "cv")]) == 2
    assert not (tmp_path / "cv").exists()

    config = tmp_path / "c.json"
    config.write_text('{"training_strategy": "end2end", "learning_rat": 1}')
    assert main(["train", str(data), str(tmp_path / "m2"), "--config_filepath", str(config)]) == 2
    assert "learning_rat" in capsys.readouterr().err
    assert main(["predict", str(data), str(tmp_path / "p.jsonl"), str(tmp_path / "nowhere")]) == 2
    assert "not a directory" in capsys.readouterr().err


def test_builtin_synthetic_demo_is_labelled(tmp_path, capsys):
    assert main(["crossvalidate", "synthetic-demo", str(tmp_path / "cv"), "--set",
                 "epochs=5", "--no-plots"]) == 0
    captured = capsys.readouterr()
    assert "SYNTHETIC" in captured.out and "SYNTHETIC" in captured.err
    assert main(["train", "no-such-data", str(tmp_path / "m")]) == 2
    assert "synthetic-demo" in capsys.readouterr().err


def test_readme_main_job_runs_as_written(tmp_path, monkeypatch, capsys):
    """The README's second command (the main job) works as written, from any directory (run
    in this process; tests/cli/test_readme_commands.py runs it as ``python -m irene``, slow)."""
    block = (ROOT / "README.md").read_text().split("```bash\n", 1)[1].split("```", 1)[0]
    setup, main_job = (line.split("#", 1)[0].strip() for line in block.strip().splitlines())
    assert setup == "bash scripts/setup_and_test.sh"
    assert (ROOT / ".ci" / "run").read_text().count(setup) == 1  # CI runs the same command
    args = main_job.split()
    assert args[0] == "irene"
    monkeypatch.chdir(tmp_path)
    assert main(args[1:]) == 0
    out = capsys.readouterr().out
    assert "SYNTHETIC DATA" in out and "overall" in out
    result = json.loads((tmp_path / args[-1] / "crossvalidation.json").read_text())
    assert result["synthetic_data"] is True and len(result["per_model"]) == 4
    assert list((tmp_path / args[-1] / "figures").glob("*.png"))


def test_crossvalidation_figures_drawn_alongside_and_a_failure_raises(data, tmp_path,
                                                                    monkeypatch):
    """The figures are drawn while the other outputs are written (half in a forked child where
    there is more than one CPU): all four files appear, the other work runs once, and a figure
    that fails to draw raises (whichever process drew it)."""
    from irene.cli.crossvalidate import draw_figures_alongside
    from irene.evaluation import leave_one_model_out
    from irene.model import IreneRegressor
    from irene.report import plots

    trees = read_trees(data)
    cv = leave_one_model_out(trees, lambda: IreneRegressor(epochs=2))
    done: list[int] = []
    draw_figures_alongside(cv.held_out(trees), tmp_path / "figures", lambda: done.append(1))
    assert done == [1]
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == [
        "cv_energy_vs_seq_len.png", "cv_error_by_model.png", "cv_error_distribution.png",
        "cv_predicted_vs_measured.png"]

    def fail(*args, **kwargs):
        raise ValueError("this figure cannot be drawn")

    monkeypatch.setattr(plots, "plot_energy_vs_seq_len", fail)
    with pytest.raises((RuntimeError, ValueError), match="this figure cannot be drawn"):
        draw_figures_alongside(cv.held_out(trees), tmp_path / "again", lambda: None)
