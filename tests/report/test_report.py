"""Breakdowns, terminal output, the HTML page and the explain CLI, on trees with known energies."""

from __future__ import annotations

import json
import re
from io import StringIO

import pytest
from rich.console import Console
from support.trees import bert_like_tree, toy_tree

from irene.cli import main
from irene.evaluation import error_stats, merge_predictions, pair_within
from irene.report.breakdown import (
    breakdown_rows,
    energy_source,
    explain_tree,
    primitive_type_shares,
    scope_pattern,
    top_nodes,
)
from irene.report.compare import compare_trees
from irene.report.format import format_energy
from irene.report.html import build_report
from irene.report.select import select_tree
from irene.report.terminal import render_breakdown, render_comparison
from irene.tree import write_trees


def render(breakdown, width: int = 160) -> str:
    console = Console(file=StringIO(), width=width, highlight=False, color_system=None)
    render_breakdown(breakdown, console)
    return console.file.getvalue()


def section(text: str, title: str) -> list[str]:
    """The body lines of the terminal table titled ``title`` (between its rule and a blank)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith(title))
    rule = next(i for i in range(start, len(lines)) if set(lines[i].strip()) == {"─"})
    body = []
    for line in lines[rule + 1:]:
        if not line.strip():
            break
        body.append(line)
    return body


# --------------------------------------------------------------------------------------------
# units and helpers


@pytest.mark.parametrize(("joules", "text"), [
    (12.3e-3, "12.3 mJ"), (4.56e-6, "4.56 µJ"), (1.5, "1.50 J"), (0.0, "0 J"),
    (-0.002, "-2.00 mJ"), (999.96e-6, "1.00 mJ"), (3e-10, "0.300 nJ"), (1234.0, "1.23 kJ"),
    (None, "—"),
])
def test_format_energy_picks_a_readable_unit(joules, text):
    assert format_energy(joules) == text


def test_scope_pattern_replaces_layer_indices_only():
    assert scope_pattern("bert.encoder.layer.11.output.dense") \
        == "bert.encoder.layer.*.output.dense"
    assert scope_pattern("h.0.attn.c_attn") == "h.*.attn.c_attn"
    assert scope_pattern("layers.3") == "layers.*"
    assert scope_pattern("attention.self.matmul_1") == "attention.self.matmul_1"
    assert scope_pattern("0.dense") == "*.dense"


# --------------------------------------------------------------------------------------------
# which energy is explained


def test_energy_source_prefers_prediction_then_ground_truth():
    assert energy_source(toy_tree()) == "predicted"
    assert energy_source(toy_tree(), "measured") == "measured"
    assert energy_source(toy_tree(predicted=False)) == "measured"
    with pytest.raises(ValueError, match="no predicted_energy on node 'toy'"):
        energy_source(toy_tree(predicted=False), "predicted")
    with pytest.raises(ValueError, match="no ground_truth_energy on node 'toy'"):
        energy_source(toy_tree(measured=False), "measured")
    with pytest.raises(ValueError, match="no predicted_energy or ground_truth_energy on node"):
        energy_source(toy_tree(predicted=False, measured=False))


def test_partial_prediction_falls_back_to_the_complete_ground_truth():
    tree = toy_tree()
    tree.root.children[1].children[0].predicted_energy = None
    assert energy_source(tree) == "measured"
    with pytest.raises(ValueError, match="toy.layer.0.linear"):
        energy_source(tree, "predicted")


# --------------------------------------------------------------------------------------------
# the breakdown of the toy tree (every number checked by hand)


def test_rows_carry_shares_of_parent_and_model_and_errors():
    rows = {r.scope: r for r in breakdown_rows(toy_tree(), "predicted")}
    assert rows["toy"].share_of_parent is None and rows["toy"].share_of_model == 1.0
    assert rows["toy.layer.0"].share_of_model == pytest.approx(0.425)
    assert rows["toy.layer.0.linear"].share_of_parent == pytest.approx(3.0 / 4.25)
    assert rows["toy.layer.0.linear"].share_of_model == pytest.approx(0.30)
    assert rows["toy.layer.0.linear"].error_pct == pytest.approx(100 * (3.0 - 3.3) / 3.3)
    assert rows["toy.embed.word"].name == "word"
    assert [r.depth for r in breakdown_rows(toy_tree(), "predicted", max_depth=1)] == [0, 1, 1, 1]


def test_type_shares_sum_to_one_and_match_the_leaves():
    shares = primitive_type_shares(toy_tree(), "predicted")
    assert [(s.instance_type, s.count) for s in shares] == [
        ("Linear", 2), ("softmax", 2), ("Embedding", 1)]
    assert [s.share for s in shares] == pytest.approx([0.60, 0.25, 0.15])
    assert sum(s.share for s in primitive_type_shares(bert_like_tree(), "measured")) \
        == pytest.approx(1.0)


def test_top_nodes_group_repeated_layers():
    top = top_nodes(toy_tree(), "predicted", "ml", n=2)
    assert [(t.label, t.count) for t in top] == [("toy.layer.*.linear", 2),
                                                 ("toy.layer.*.softmax", 2)]
    assert top[0].energy_j == pytest.approx(6.0) and top[0].share_of_model == pytest.approx(0.6)
    assert top[0].measured_j == pytest.approx(6.2)
    single = top_nodes(toy_tree(), "predicted", "ml", n=3, group_repeated=False)
    assert [t.label for t in single] == ["toy.layer.0.linear", "toy.layer.1.linear",
                                         "toy.embed.word"]
    modules = top_nodes(toy_tree(), "measured", "module", n=5)
    assert [(m.label, round(m.energy_j, 6)) for m in modules] == [("toy.layer.*", 8.3),
                                                                  ("toy.embed", 1.45)]


def test_terminal_lists_top_n_and_shares_that_add_up_to_100():
    text = render(explain_tree(toy_tree(), top=2))
    assert "predicted energy" in text and "10.0 J" in text and "9.50 J" in text
    assert "+5.3 %" in text  # model-level error (10 - 9.5) / 9.5
    primitives = section(text, "Top 2 primitives")
    assert [line.split()[1] for line in primitives] == ["toy.layer.*.linear",
                                                        "toy.layer.*.softmax"]
    assert "60.0 %" in primitives[0] and "6.00 J" in primitives[0]
    types = section(text, "By primitive type")
    shares = [float(re.search(r"([\d.]+) %", line).group(1)) for line in types]
    assert shares == [60.0, 25.0, 15.0]
    assert "by primitive type: Linear 60.0 %, softmax 25.0 %, Embedding 15.0 %" in text
    tree_lines = section(text, "Where the energy goes")
    assert len(tree_lines) == 9  # every node of the toy tree
    assert re.search(r"└─ softmax\s+softmax\s+1\.25 J\s+29\.4 %\s+12\.5 %", tree_lines[-1])


def test_terminal_shares_of_a_bert_tree_sum_to_100_within_rounding():
    text = render(explain_tree(bert_like_tree(layers=3), top=5))
    shares = [float(re.search(r"([\d.]+) %", line).group(1))
              for line in section(text, "By primitive type")]
    assert len(shares) == 8 and abs(sum(shares) - 100.0) <= 0.05 * len(shares)
    top = section(text, "Top 5 primitives")
    assert top[0].split()[1] == "bert.encoder.layer.*.intermediate.dense" or \
        top[0].split()[1] == "bert.encoder.layer.*.output.dense"
    assert len(top) == 5


def test_depth_limit_marks_hidden_children_and_narrow_consoles_keep_numbers():
    text = render(explain_tree(toy_tree(), depth=1), width=80)
    lines = section(text, "Where the energy goes")
    assert len(lines) == 4 and "[+2]" in lines[2] and "4.25 J" in lines[2]
    assert all(len(line) <= 80 for line in text.splitlines())


def test_measured_only_tree_is_explained_as_measured():
    breakdown = explain_tree(toy_tree(predicted=False))
    assert breakdown.source == "measured" and breakdown.total_j == 9.5
    text = render(breakdown)
    assert "measured energy (ground truth)" in text and "no prediction" in text
    assert "error" not in section(text, "Where the energy goes")[0]


# --------------------------------------------------------------------------------------------
# selection, comparison, merging, error statistics


def test_select_tree_by_index_or_key_and_clear_errors():
    trees = [toy_tree(), bert_like_tree(seq_len=64), bert_like_tree(seq_len=128)]
    assert select_tree(trees, index=2) is trees[2]
    assert select_tree(trees, seq_len=64) is trees[1]
    assert select_tree(trees, model="toy") is trees[0]
    with pytest.raises(ValueError, match=r"2 trees match.*\[1\] bert-tiny-test · batch 8 · seq 64"):
        select_tree(trees, model="bert-tiny-test")
    with pytest.raises(ValueError, match="out of range"):
        select_tree(trees, index=3)
    with pytest.raises(ValueError, match="no tree matches"):
        select_tree(trees, batch_size=3)


def test_compare_matches_modules_by_scope_and_places_extra_layers():
    small, big = bert_like_tree(layers=2, seed=1), bert_like_tree(layers=4, seed=2)
    comparison = compare_trees(small, big, depth=2)
    keys = [r.key for r in comparison.rows]
    assert keys.index("encoder.layer.1") < keys.index("encoder.layer.2") \
        < keys.index("encoder.layer.3") < keys.index("pooler")
    row = {r.key: r for r in comparison.rows}
    assert row["encoder.layer.3"].energy_a is None and row["encoder.layer.3"].diff_j is None
    layer0 = row["encoder.layer.0"]
    assert layer0.diff_j == pytest.approx(layer0.energy_b - layer0.energy_a)
    assert comparison.total_b > comparison.total_a
    assert comparison.diff_j == pytest.approx(big.root.predicted_energy
                                              - small.root.predicted_energy)
    console = Console(file=StringIO(), width=140, color_system=None)
    render_comparison(comparison, "2 layers", "4 layers", console)
    text = console.file.getvalue()
    assert "layer.3  only in B" in text and "B = " in text and "Per primitive type" in text


def test_merge_predictions_joins_by_key_and_id_and_names_what_is_missing():
    gold = [bert_like_tree(predicted=False, seq_len=s) for s in (64, 128)]
    pred = [bert_like_tree(measured=False, seq_len=s) for s in (128, 64)]
    merged = merge_predictions(gold, pred)
    assert merged[0].root.predicted_energy == pred[1].root.predicted_energy
    assert merged[0].root.ground_truth_energy == gold[0].root.ground_truth_energy
    assert gold[0].root.predicted_energy is None  # inputs untouched
    with pytest.raises(ValueError, match="no predicted tree"):
        merge_predictions(gold, pred[:1])
    broken = bert_like_tree(measured=False, seq_len=64)
    broken.root.children[0].id = "renamed"
    with pytest.raises(ValueError, match="bert.embeddings"):
        merge_predictions(gold[:1], [broken])


def test_error_stats_per_node_type():
    stats = {s.group: s for s in error_stats(pair_within([toy_tree()]), "node_type")}
    assert set(stats) == {"model", "module", "ml"}
    assert stats["model"].mape == pytest.approx(100 * 0.5 / 9.5)
    assert stats["module"].count == 3 and stats["ml"].count == 5


# --------------------------------------------------------------------------------------------
# the HTML page (static checks; the browser test opens it)

_EXTERNAL = re.compile(r"""(?:src|href|action|poster)\s*=\s*["']?\s*(?:https?:)?//|"""
                       r"""url\(\s*["']?\s*(?:https?:)?//|@import|https?://""", re.IGNORECASE)


def test_html_is_self_contained_and_holds_every_tree():
    trees = [bert_like_tree(layers=2), toy_tree(predicted=False)]
    page = build_report(trees, origin="/data/trees.jsonl")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert not _EXTERNAL.search(page), _EXTERNAL.search(page).group(0)
    assert "<script src" not in page and "<link rel=\"stylesheet\"" not in page
    data = json.loads(re.search(r'<script type="application/json" id="irene-data">(.*?)</script>',
                                page, re.S).group(1))
    assert [t["label"] for t in data["trees"]] == ["bert-tiny-test · batch 8 · seq 128",
                                                   "toy · batch 2 · seq 16"]
    assert data["trees"][1]["source"] == "measured" and data["trees"][1]["total"] == "9.50 J"
    assert data["trees"][0]["root"]["children"][0]["name"] == "embeddings"
    assert "Predicted vs measured" in page and "<svg class=scatter" in page
    assert "trees.jsonl" in page


def test_html_without_ground_truth_has_no_accuracy_section():
    page = build_report([bert_like_tree(measured=False)])
    assert "Predicted vs measured" not in page and "<svg class=scatter" not in page


def test_html_escapes_names_that_could_end_the_script():
    tree = toy_tree()
    tree.root.children[0].children[0].instance_type = "</script><script>alert(1)</script>"
    tree.model_name = "<b>model</b>"
    page = build_report([tree])
    assert "<script>alert(1)" not in page and "<b>model</b>" not in page
    assert page.count("</script>") == 2  # the data block and the page's script


# --------------------------------------------------------------------------------------------
# the CLI


@pytest.fixture
def trees_file(tmp_path):
    path = tmp_path / "trees.jsonl"
    write_trees([toy_tree(), bert_like_tree(layers=2, seq_len=64),
                 bert_like_tree(layers=2, seq_len=128, predicted=False)], path)
    return path


def test_cli_explain_prints_the_chosen_tree(trees_file, capsys):
    assert main(["explain", str(trees_file), "--tree", "0", "--top", "2"]) == 0
    out = capsys.readouterr().out
    assert "toy · batch 2 · seq 16" in out and "Top 2 primitives" in out
    assert "by primitive type: Linear 60.0 %, softmax 25.0 %, Embedding 15.0 %" in out
    assert main(["explain", str(trees_file), "--model", "bert-tiny-test", "--seq-len", "128",
                 "--depth", "1"]) == 0
    out = capsys.readouterr().out
    assert "measured energy (ground truth)" in out and "encoder [+2]" in out


def test_cli_explain_errors_are_one_line_and_exit_2(trees_file, tmp_path, capsys):
    assert main(["explain", str(trees_file)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("irene explain: error: 3 trees match") and err.count("\n") == 1
    assert main(["explain", str(trees_file), "--tree", "2", "--energy", "predicted"]) == 2
    assert "no predicted_energy" in capsys.readouterr().err
    assert main(["explain", str(tmp_path / "missing.jsonl")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_cli_report_writes_one_page(trees_file, tmp_path, capsys):
    out = tmp_path / "sub" / "report.html"
    assert main(["report", str(trees_file), "-o", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    page = out.read_text()
    assert "toy · batch 2 · seq 16" in page and not _EXTERNAL.search(page)
    assert not list(out.parent.glob(".*.tmp"))


def test_cli_report_refuses_a_tree_without_energy_and_writes_nothing(tmp_path, capsys):
    path = tmp_path / "bare.jsonl"
    write_trees([toy_tree(predicted=False, measured=False)], path)
    assert main(["report", str(path), "-o", str(tmp_path / "r.html")]) == 2
    assert "no predicted_energy or ground_truth_energy" in capsys.readouterr().err
    assert not (tmp_path / "r.html").exists()


def test_cli_compare_two_trees_files_with_a_figure(tmp_path, capsys):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    write_trees([bert_like_tree(layers=2)], a)
    write_trees([bert_like_tree(layers=3, seed=5)], b)
    figure = tmp_path / "cmp.png"
    assert main(["compare", str(a), str(b), "--figure", str(figure)]) == 0
    out = capsys.readouterr().out
    assert "A: a.jsonl" in out and "layer.2  only in B" in out
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and figure.stat().st_size > 10_000


def test_cli_compare_two_seq_lens_from_one_file(trees_file, capsys):
    assert main(["compare", str(trees_file), str(trees_file), "--model", "bert-tiny-test",
                 "--seq-len", "64", "128", "--energy", "measured"]) == 0
    out = capsys.readouterr().out
    assert "A: seq 64" in out and "B: seq 128" in out


def test_cli_compare_a_model_needs_a_predictor(trees_file, capsys):
    assert main(["compare", "bert-base-uncased", str(trees_file), "--tree", "0"]) == 2
    assert "give --predictor" in capsys.readouterr().err
    assert main(["compare", str(trees_file), str(trees_file), "--seq-len", "1", "2", "3"]) == 2
    assert "--seq-len takes one value" in capsys.readouterr().err
