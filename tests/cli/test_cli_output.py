"""What every command shares: --json and --quiet (stdout carries the result alone), joules
with Wh/kWh beside, model names printed literally."""

from __future__ import annotations

import argparse
import json

import pytest

from irene.cli import COMMANDS, build_parser, main
from irene.report.format import energy_text
from irene.synthetic import DEFAULT_ARCHS, make_synthetic_trees
from irene.tree import read_trees, write_trees


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def test_every_command_takes_json_and_quiet_but_not_both():
    subs = _subparsers()
    assert set(subs) == set(COMMANDS)
    for name, sub in subs.items():
        options = {s for a in sub._actions for s in a.option_strings}
        assert {"--json", "--quiet"} <= options, name
    with pytest.raises(SystemExit):
        build_parser().parse_args(["models", "--json", "--quiet"])


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "trees.jsonl"
    write_trees(make_synthetic_trees(DEFAULT_ARCHS[:3], batch_sizes=(1, 8), seq_lens=(32,),
                                     noise=0.005), path)
    return path


@pytest.fixture(scope="module")
def predicted(trees, tmp_path_factory):
    out = tmp_path_factory.mktemp("pred")
    assert main(["train", str(trees), str(out / "model"), "--estimator", "structure",
                 "--quiet"]) == 0
    assert main(["predict", str(trees), str(out / "pred.jsonl"), str(out / "model"),
                 "--quiet"]) == 0
    return out / "model", out / "pred.jsonl"


def _one_number(text: str) -> float:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return float(lines[0])


def test_quiet_prints_the_one_number_asked_for(trees, predicted, tmp_path, capsys):
    model, pred = predicted
    capsys.readouterr()
    roots = [t.root.predicted_energy for t in read_trees(pred)]
    assert main(["predict", str(trees), str(tmp_path / "p.jsonl"), str(model), "--quiet"]) == 0
    assert _one_number(capsys.readouterr().out) == pytest.approx(sum(roots) / len(roots),
                                                                 rel=1e-5)
    assert main(["explain", str(pred), "--tree", "1", "--quiet"]) == 0
    assert _one_number(capsys.readouterr().out) == pytest.approx(roots[1], rel=1e-5)
    assert main(["evaluate", str(trees), str(pred), "--json"]) == 0
    mape = json.loads(capsys.readouterr().out)
    assert main(["evaluate", str(trees), str(pred), "--quiet"]) == 0
    assert _one_number(capsys.readouterr().out) == pytest.approx(mape["model"], rel=1e-5)
    assert main(["compare", str(pred), str(pred), "--tree", "0", "1", "--quiet"]) == 0
    assert _one_number(capsys.readouterr().out) == pytest.approx(roots[1] - roots[0], rel=1e-4)
    assert main(["models", "--no-params", "--quiet"]) == 0
    assert _one_number(capsys.readouterr().out) >= 6


def test_json_output_is_pure_json_with_notes_on_stderr(trees, predicted, tmp_path, capsys):
    model, pred = predicted
    capsys.readouterr()
    assert main(["train", str(trees), str(tmp_path / "m"), "--estimator", "structure",
                 "--json"]) == 0
    out = capsys.readouterr()
    data = json.loads(out.out)  # the synthetic-data note is on stderr, not in the JSON
    assert data["trees"] == 6 and set(data["training_errors_pct"]) == {"ml", "module", "model"}
    assert "SYNTHETIC" in out.err
    assert main(["compare", str(pred), str(pred), "--tree", "0", "1", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["diff_j"] == pytest.approx(data["b"]["total_j"] - data["a"]["total_j"])
    assert data["modules"]
    assert main(["export", str(pred), "-o", str(tmp_path / "n.csv"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["trees"] == 6
    assert main(["report", str(pred), "-o", str(tmp_path / "r.html"), "--quiet"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "r.html")


def test_trace_quiet_counts_the_trees_written(tmp_path, capsys):
    from support.models import bert_config

    bert_config(num_hidden_layers=1).save_pretrained(tmp_path / "tiny")
    args = ["trace", str(tmp_path / "tiny"), "--batch-sizes", "1,2", "--seq-len", "8",
            "--no-timing", "--offline", "-o", str(tmp_path / "t.jsonl"), "--quiet"]
    assert main(args) == 0
    assert capsys.readouterr().out == "2\n"
    assert main(args) == 0  # resumed: nothing new
    assert capsys.readouterr().out == "0\n"
    # the output's lock is released and its file removed: nothing left but the output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.jsonl", "tiny"]


def test_the_lock_file_goes_with_the_lock(tmp_path):
    from irene.files import LockedError, exclusive_lock

    with exclusive_lock(tmp_path / "out.jsonl"):
        assert (tmp_path / ".out.jsonl.lock").exists()
        with pytest.raises(LockedError, match="another irene process"):
            with exclusive_lock(tmp_path / "out.jsonl"):
                pass
        assert (tmp_path / ".out.jsonl.lock").exists()  # the refused one removed nothing
    assert not (tmp_path / ".out.jsonl.lock").exists()
    with exclusive_lock(tmp_path / "out.jsonl"):  # and it can be taken again
        pass


def test_energies_get_watt_hours_beside_joules():
    assert energy_text(453.7, 4) == "453.7 J (0.126 Wh)"
    assert energy_text(7.2e6) == "7200 kJ (2 kWh)"
    assert energy_text(35.9) == "35.9 J"            # under 0.01 Wh: joules only
    assert energy_text(0.0123) == "12.3 mJ"
    assert energy_text(None) == "—"


def test_model_names_are_printed_literally(tmp_path, capsys):
    """Rich markup in a model path (``[bold]``) is printed as written, not interpreted."""
    from support.models import llama_config

    directory = tmp_path / "my" / "[bold]x"
    llama_config(hidden_size=64, num_hidden_layers=2).save_pretrained(directory)
    assert main(["estimate", str(directory / "config.json"), "--serving", "vllm", "--gpu",
                 "H100", "--num-gpus", "1", "--prompt-len", "16", "--new-tokens", "8",
                 "--offline"]) == 0
    out = capsys.readouterr().out.replace("\n", "")  # the path may wrap, by its length
    assert "[bold]x" in out
