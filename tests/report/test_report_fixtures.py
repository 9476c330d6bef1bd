"""The shared test trees (tests/support/trees.py) are valid and round-trip."""

from __future__ import annotations

from support.trees import bert_like_tree, toy_tree

from irene.tree import read_trees, write_trees


def test_fixture_trees_are_valid_and_round_trip(tmp_path):
    trees = [toy_tree(), bert_like_tree(), bert_like_tree(predicted=False, seq_len=64)]
    write_trees(trees, tmp_path / "t.jsonl")
    again = read_trees(tmp_path / "t.jsonl")
    assert [t.to_dict() for t in again] == [t.to_dict() for t in trees]
    leaves = [n for n in again[1].nodes() if n.is_leaf]
    assert {n.instance_type for n in leaves} >= {"Linear", "matmul", "softmax", "LayerNorm"}
