"""Trees that are not real measurements (the synthetic data set, a simulated meter) are labelled
in every figure, the HTML page and the terminal; real trees are not."""

from __future__ import annotations

import html
from io import StringIO

import pytest
from matplotlib.figure import Figure
from rich.console import Console
from support.trees import bert_like_tree, toy_tree

import irene.report.figures as figure_files
import irene.report.plots as plots
from irene.cli import main
from irene.datasets import is_synthetic, resolve_dataset
from irene.report import SYNTHETIC_LABEL, measured_word, synthetic_label
from irene.report.breakdown import explain_tree
from irene.report.compare import compare_trees
from irene.report.html import build_report
from irene.report.terminal import render_breakdown, render_comparison
from irene.tree import Tree, read_trees, write_trees

SYNTHETIC_MEASURED = "synthetic 'measured'"


def marked(tree: Tree, **meta: object) -> Tree:
    tree.meta.update(meta)
    return tree


def synthetic_trees() -> list[Tree]:
    """BERT-shaped trees at two sequence lengths, with predictions and a ground truth, marked
    as the synthetic data set marks them."""
    return [marked(bert_like_tree(layers=2, seq_len=s), synthetic=True) for s in (64, 128)]


def real_trees() -> list[Tree]:
    """The same trees without the mark (their device renamed: the fixture calls it
    "synthetic", which would defeat the checks that the word is absent)."""
    return [marked(bert_like_tree(layers=2, seq_len=s), device="test gpu") for s in (64, 128)]


def figure_texts(figure: Figure) -> list[str]:
    """Every piece of text drawn in ``figure``: figure texts, titles, axis labels, legends."""
    texts = [t.get_text() for t in figure.texts]
    if figure._suptitle is not None:
        texts.append(figure._suptitle.get_text())
    for legend in figure.legends:
        texts += [t.get_text() for t in legend.get_texts()]
    for axis in figure.axes:
        texts += [axis.get_title(), axis.get_xlabel(), axis.get_ylabel()]
        if axis.get_legend() is not None:
            texts += [t.get_text() for t in axis.get_legend().get_texts()]
    return texts


@pytest.fixture
def drawn(monkeypatch):
    """Figures as handed to the file writer (after labelling), by file name; still written."""
    figures: dict[str, Figure] = {}
    write = figure_files.write_figure

    def capture(figure, path):
        figures[path.name] = figure
        return write(figure, path)

    monkeypatch.setattr(figure_files, "write_figure", capture)
    return figures


# --------------------------------------------------------------------------------------------
# deciding


def test_synthetic_flag_and_simulated_meter_are_not_real_measurements():
    assert synthetic_label([toy_tree()]) is None
    assert measured_word([toy_tree()]) == "measured"
    for meta in ({"synthetic": True}, {"meter": "simulated"}, {"meter": "nvml+simulated"},
                 {"ground_truth_meter": "simulated"}):
        trees = [toy_tree(), marked(toy_tree(), **meta)]
        assert is_synthetic(trees), meta
        assert synthetic_label(trees) == SYNTHETIC_LABEL
        assert measured_word(trees) == SYNTHETIC_MEASURED
    for meta in ({"synthetic": False}, {"meter": "nvml"}, {"meter": "rapl+nvml"},
                 {"meter": None}):
        assert synthetic_label([marked(toy_tree(), **meta)]) is None, meta


def test_the_builtin_demo_data_set_is_labelled():
    trees = read_trees(resolve_dataset("synthetic-demo"))
    assert synthetic_label(trees) == SYNTHETIC_LABEL


# --------------------------------------------------------------------------------------------
# figures


def test_every_figure_of_synthetic_trees_carries_the_label(tmp_path, drawn):
    trees = synthetic_trees()
    written = plots.plot_all(trees, tmp_path / "all")
    written += plots.plot_crossvalidation(trees, trees, tmp_path / "cv")
    written.append(plots.plot_primitive_breakdown(trees[:1], tmp_path / "one.png"))
    comparison = compare_trees(trees[0], real_trees()[1])
    written.append(plots.plot_comparison(comparison, tmp_path / "cmp.svg"))
    assert len(drawn) == len(written) == 10
    for name, figure in drawn.items():
        red = [t for t in figure.texts if t.get_text() == SYNTHETIC_LABEL]
        assert len(red) == 1, name
        assert red[0].get_color() == figure_files.SYNTHETIC_COLOUR and red[0].get_visible()
    for name in ("predicted_vs_measured.png", "cv_predicted_vs_measured.png"):
        texts = figure_texts(drawn[name])
        assert f"{SYNTHETIC_MEASURED} energy per call" in texts
        assert f"Predicted vs {SYNTHETIC_MEASURED} energy, every node" in texts
    seq = figure_texts(drawn["energy_vs_seq_len.png"])
    assert any(t.endswith(f"· {SYNTHETIC_MEASURED}") for t in seq)
    assert all(path.stat().st_size > 10_000 for path in written)


def test_figures_of_real_trees_carry_no_label(tmp_path, drawn):
    trees = real_trees()
    plots.plot_all(trees, tmp_path / "all")
    plots.plot_crossvalidation(trees, trees, tmp_path / "cv")
    assert len(drawn) == 8
    for name, figure in drawn.items():
        texts = figure_texts(figure)
        assert not any("SYNTHETIC" in t or "synthetic" in t for t in texts), name
    assert "measured energy per call" in figure_texts(drawn["predicted_vs_measured.png"])


def test_label_figure_only_labels_synthetic_trees():
    figure = Figure()
    assert figure_files.label_figure(figure, real_trees()) is None and not figure.texts
    simulated = [marked(toy_tree(), meter="simulated")]
    assert figure_files.label_figure(figure, simulated) == SYNTHETIC_LABEL
    assert [t.get_text() for t in figure.texts] == [SYNTHETIC_LABEL]


# --------------------------------------------------------------------------------------------
# HTML


def test_html_of_synthetic_trees_has_a_banner_and_says_so_in_the_title():
    page = build_report(synthetic_trees(), origin="demo.jsonl")
    escaped = html.escape(SYNTHETIC_LABEL)
    title = page.split("<title>", 1)[1].split("</title>", 1)[0]
    assert title.startswith(escaped)
    body = page.split("<body>", 1)[1]
    assert body.lstrip().startswith("<div class=synthetic-banner role=alert>")
    assert escaped in body.split("<header>", 1)[0]
    assert f"Predicted vs {html.escape(SYNTHETIC_MEASURED)}" in page
    assert f"<th>{html.escape(SYNTHETIC_MEASURED)}</th>" in page
    assert '"measuredWord":"synthetic \'measured\'"' in page


def test_html_of_real_trees_has_no_banner():
    page = build_report(real_trees())
    assert SYNTHETIC_LABEL not in page and html.escape(SYNTHETIC_LABEL) not in page
    assert "class=synthetic-banner" not in page
    assert "<th>measured</th>" in page and '"measuredWord":"measured"' in page


# --------------------------------------------------------------------------------------------
# terminal


def rendered(draw) -> str:
    console = Console(file=StringIO(), width=140, highlight=False, color_system=None)
    draw(console)
    return console.file.getvalue()


def test_terminal_explain_and_compare_of_synthetic_trees_print_the_label_first():
    synthetic, real = synthetic_trees()[0], real_trees()[0]
    text = rendered(lambda c: render_breakdown(explain_tree(synthetic), c))
    assert text.splitlines()[0].strip() == SYNTHETIC_LABEL
    assert text.count(SYNTHETIC_LABEL) == 1 and f"{SYNTHETIC_MEASURED}:" in text
    text = rendered(lambda c: render_comparison(compare_trees(real, synthetic), "a", "b", c))
    assert text.splitlines()[0].strip() == SYNTHETIC_LABEL
    for tree in (real, marked(toy_tree(), meter="nvml")):
        text = rendered(lambda c, t=tree: render_breakdown(explain_tree(t), c))
        assert "SYNTHETIC" not in text and "synthetic" not in text
    text = rendered(lambda c: render_comparison(compare_trees(real, real), "a", "b", c))
    assert "SYNTHETIC" not in text


def test_cli_explain_plot_report_compare_print_the_label(tmp_path, capsys):
    synthetic, real = tmp_path / "synthetic.jsonl", tmp_path / "real.jsonl"
    write_trees(synthetic_trees(), synthetic)
    write_trees(real_trees(), real)
    commands = (["explain", "{}", "--tree", "0"], ["plot", "{}", "-o", str(tmp_path / "f")],
                ["report", "{}", "-o", str(tmp_path / "r.html")],
                ["compare", "{}", "{}", "--tree", "0", "1"])
    for command in commands:
        assert main([str(synthetic) if a == "{}" else a for a in command]) == 0
        assert SYNTHETIC_LABEL in capsys.readouterr().out, command[0]
        assert main([str(real) if a == "{}" else a for a in command]) == 0
        assert "SYNTHETIC" not in capsys.readouterr().out, command[0]
