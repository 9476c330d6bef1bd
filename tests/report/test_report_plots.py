"""Every figure is a valid PNG or SVG of non-trivial size, drawn from trees with known energies."""

from __future__ import annotations

import struct
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from support.trees import bert_like_tree, toy_tree

from irene.cli import main
from irene.report.compare import compare_trees
from irene.report.plots import (
    plot_all,
    plot_comparison,
    plot_crossvalidation,
    plot_energy_vs_seq_len,
    plot_error_distribution,
    plot_predicted_vs_measured,
    plot_primitive_breakdown,
)
from irene.tree import write_trees

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_valid_figure(path: Path, min_bytes: int = 10_000) -> None:
    """A PNG with a sane header and size in pixels, or an SVG that parses and draws paths."""
    data = path.read_bytes()
    assert len(data) >= min_bytes, f"{path} is only {len(data)} bytes"
    if path.suffix == ".png":
        assert data[:8] == PNG_MAGIC and data[12:16] == b"IHDR"
        width, height = struct.unpack(">II", data[16:24])
        assert width >= 400 and height >= 300, (width, height)
        assert data.rstrip(b"\x00").endswith(b"IEND\xaeB`\x82")
    else:
        root = ET.fromstring(data)
        assert root.tag.endswith("svg")
        assert len(root.findall(".//{http://www.w3.org/2000/svg}path")) >= 20


@pytest.fixture(scope="module")
def sweep():
    """Two models × two batch sizes × three sequence lengths, with truth and prediction."""
    return [bert_like_tree(layers=2, hidden=128, batch_size=b, seq_len=s, seed=s + 7 * b + i,
                           model_name=name)
            for i, name in enumerate(("bert-small", "bert-wide")) for b in (1, 4)
            for s in (32, 64, 128)]


@pytest.mark.parametrize("fmt", ["png", "svg"])
def test_each_figure_is_valid(sweep, tmp_path, fmt):
    paths = [
        plot_predicted_vs_measured(sweep, tmp_path / f"pvm.{fmt}"),
        plot_error_distribution(sweep, tmp_path / f"err.{fmt}"),
        plot_energy_vs_seq_len(sweep, tmp_path / f"seq.{fmt}"),
        plot_primitive_breakdown(sweep, tmp_path / f"types.{fmt}"),
        plot_primitive_breakdown(sweep[:1], tmp_path / f"one.{fmt}"),
        plot_comparison(compare_trees(sweep[0], sweep[6]), tmp_path / f"cmp.{fmt}",
                        label_a="small", label_b="wide"),
    ]
    for path in paths:
        assert_valid_figure(path)


def test_plot_all_draws_what_applies(sweep, tmp_path):
    names = {p.name for p in plot_all(sweep, tmp_path)}
    assert names == {"primitive_breakdown.png", "energy_vs_seq_len.png",
                     "predicted_vs_measured.png", "error_distribution.png"}
    only_predicted = [bert_like_tree(measured=False)]
    names = {p.name for p in plot_all(only_predicted, tmp_path / "p", fmt="svg")}
    assert names == {"primitive_breakdown.svg"}


def test_accuracy_figures_need_both_energies(tmp_path):
    with pytest.raises(ValueError, match="both predicted_energy and ground_truth_energy"):
        plot_predicted_vs_measured([toy_tree(predicted=False)], tmp_path / "x.png")
    with pytest.raises(ValueError, match="png or svg"):
        plot_primitive_breakdown([toy_tree()], tmp_path / "x.jpg")
    assert not list(tmp_path.iterdir())


def test_many_trees_are_summarised_per_model(tmp_path):
    trees = [bert_like_tree(layers=1, hidden=32, seq_len=8 + i, model_name=f"m{i % 3}")
             for i in range(35)]
    assert_valid_figure(plot_primitive_breakdown(trees, tmp_path / "many.png"))


def test_plot_crossvalidation_merges_gold_and_predictions(sweep, tmp_path):
    gold = [bert_like_tree(layers=2, hidden=128, seq_len=s, predicted=False, seed=s,
                           model_name=m) for m in ("a", "b") for s in (32, 64)]
    pred = [bert_like_tree(layers=2, hidden=128, seq_len=s, measured=False, seed=s + 1,
                           model_name=m) for m in ("a", "b") for s in (32, 64)]
    paths = plot_crossvalidation(gold, pred, tmp_path / "cv")
    assert {p.name for p in paths} == {"cv_predicted_vs_measured.png",
                                       "cv_error_distribution.png", "cv_error_by_model.png",
                                       "cv_energy_vs_seq_len.png"}
    for path in paths:
        assert_valid_figure(path)
    with pytest.raises(ValueError, match="no predicted tree"):
        plot_crossvalidation(gold, pred[:2], tmp_path / "cv2")


def test_cli_plot_writes_figures(sweep, tmp_path, capsys):
    trees = tmp_path / "trees.jsonl"
    write_trees(sweep, trees)
    assert main(["plot", str(trees), "-o", str(tmp_path / "figs"), "--format", "svg"]) == 0
    written = [line.split(" ", 1)[1] for line in capsys.readouterr().out.splitlines()]
    assert len(written) == 4
    for path in written:
        assert_valid_figure(Path(path))


def test_far_off_predictions_are_drawn_at_the_edge(tmp_path):
    tree = bert_like_tree(layers=1)
    leaves = [n for n in tree.nodes() if n.is_leaf]
    leaves[0].predicted_energy = 1e-12  # a clipped non-positive prediction
    leaves[1].predicted_energy = 1e3
    assert_valid_figure(plot_predicted_vs_measured([tree], tmp_path / "edge.png"))
