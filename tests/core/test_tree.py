"""The tree format: reading IrEne's lines, round trips, and every bad-input case."""

from __future__ import annotations

import copy
import json

import pytest

from irene.tree import TreeFormatError, read_trees, require_energy, write_trees

FEATURES = dict(num_parameters=768, flops=1.5, mem_bytes=3.0, cpu=8.4, mem=10.0, gpu=49.0,
                gpu_mem=14.0, gpu_clk=1911.0, gpu_mem_clk=3802.0, times_mean=2.9e-05,
                gpu_energy_mean=0.0026)

# An IrEne-format line written out by hand: a model with one module holding two primitives and
# one primitive directly under the root, plus keys this package does not know.
IRENE_LINE = {
    "model_name": "toy-bert", "batch_size": 8, "seq_len": 32, "dataset_tag": "handwritten",
    "frontend_tree": {
        "id": "r", "scope": "root", "parent_name": "", "level": 0, "instance_type": "BertModel",
        "type": "model", **FEATURES, "ground_truth_energy": 0.05, "lab_note": {"a": [1, 2]},
        "child_nodes_obj": [
            {"id": "m", "scope": "root.pooler", "parent_name": "root", "level": 1,
             "instance_type": "BertPooler", "type": "module", **FEATURES,
             "ground_truth_energy": 0.03,
             "child_nodes_obj": [
                 {"id": "l1", "scope": "root.pooler.dense", "parent_name": "root.pooler",
                  "level": 2, "instance_type": "Linear", "type": "ml", **FEATURES,
                  "ground_truth_energy": 0.02, "child_nodes_obj": [], "child_nodes": []},
                 {"id": "l2", "scope": "root.pooler.activation", "parent_name": "root.pooler",
                  "level": 2, "instance_type": "Tanh", "type": "ml", **FEATURES,
                  "ground_truth_energy": 0.01, "child_nodes_obj": [], "child_nodes": []}],
             "child_nodes": ["root.pooler.dense", "root.pooler.activation"]},
            {"id": "l3", "scope": "root.matmul", "parent_name": "root", "level": 1,
             "instance_type": "MatMul", "type": "ml", **FEATURES, "ground_truth_energy": 0.015,
             "child_nodes_obj": [], "child_nodes": []}],
        "child_nodes": ["root.pooler", "root.matmul"]},
}


def write_lines(path, objs):
    path.write_text("".join(json.dumps(o) + "\n" for o in objs))
    return path


def test_reads_handwritten_irene_line(tmp_path):
    (tree,) = read_trees(write_lines(tmp_path / "t.jsonl", [IRENE_LINE]))
    assert tree.key[:3] == ("toy-bert", 8, 32) and tree.key.schema == "irene2021 v1"
    assert [n.scope for n in tree.nodes()] == [
        "root", "root.pooler", "root.pooler.dense", "root.pooler.activation", "root.matmul"]
    assert [n.type for n in tree.nodes()] == ["model", "module", "ml", "ml", "ml"]
    assert tree.root.children[0].children[1].ground_truth_energy == 0.01
    assert tree.root.features["gpu_clk"] == 1911.0
    assert tree.meta == {"dataset_tag": "handwritten"}


def test_round_trip_keeps_unknown_keys_and_adds_predictions(tmp_path):
    (tree,) = read_trees(write_lines(tmp_path / "t.jsonl", [IRENE_LINE]))
    write_trees([tree], tmp_path / "out.jsonl")
    assert json.loads((tmp_path / "out.jsonl").read_text()) == IRENE_LINE
    for node in tree.nodes():
        node.predicted_energy = 0.5
    write_trees([tree], tmp_path / "pred.jsonl.gz")
    (again,) = read_trees(tmp_path / "pred.jsonl.gz")
    assert all(n.predicted_energy == 0.5 for n in again.nodes())
    assert again.root.extra == {"lab_note": {"a": [1, 2]}}


def broken(mutate):
    obj = copy.deepcopy(IRENE_LINE)
    mutate(obj)
    return obj


LEAF = ("frontend_tree", "child_nodes_obj", 0, "child_nodes_obj", 0)


def at(obj, path):
    for key in path:
        obj = obj[key]
    return obj


BAD_CASES = {
    "missing field": (lambda o: at(o, LEAF).pop("flops"), "field 'flops': missing field"),
    "wrong type": (lambda o: at(o, LEAF).update(times_mean="fast"), "field 'times_mean'"),
    "bool as number": (lambda o: at(o, LEAF).update(flops=True), "field 'flops'"),
    "duplicate id": (lambda o: at(o, LEAF).update(id="r"), "duplicate id 'r'"),
    "bad node type": (lambda o: at(o, LEAF).update(type="layer"), "field 'type'"),
    "non-ml leaf": (lambda o: at(o, LEAF).update(type="module"), "a leaf must be an 'ml' node"),
    "missing root field": (lambda o: o.pop("seq_len"), "field 'seq_len': missing field"),
    "children not a list": (lambda o: at(o, LEAF).update(child_nodes_obj={}),
                            "field 'child_nodes_obj'"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_names_file_line_and_field(tmp_path, case):
    mutate, expected = BAD_CASES[case]
    path = write_lines(tmp_path / "bad.jsonl", [IRENE_LINE, broken(mutate)])
    with pytest.raises(TreeFormatError) as err:
        read_trees(path)
    message = str(err.value)
    assert f"{path}:2" in message
    assert expected in message


def test_malformed_json_names_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(IRENE_LINE) + "\n\n{not json\n")
    with pytest.raises(TreeFormatError, match=r"bad.jsonl:3: malformed JSON"):
        read_trees(path)


def test_energy_required_for_training_must_exist_and_be_positive(tmp_path):
    missing = broken(lambda o: at(o, LEAF).pop("ground_truth_energy"))
    zero = broken(lambda o: at(o, LEAF).update(ground_truth_energy=0.0))
    for obj, expected in ((missing, "missing"), (zero, "must be positive")):
        trees = read_trees(write_lines(tmp_path / "e.jsonl", [obj]))
        with pytest.raises(TreeFormatError, match=expected) as err:
            require_energy(trees)
        assert "e.jsonl:1" in str(err.value)
        assert "root.pooler.dense" in str(err.value)


def test_failed_write_leaves_no_file(tmp_path):
    (tree,) = read_trees(write_lines(tmp_path / "t.jsonl", [IRENE_LINE]))
    tree.root.features["flops"] = float("nan")  # not valid JSON: the writer must refuse
    with pytest.raises(ValueError):
        write_trees([tree], tmp_path / "out.jsonl")
    assert list(tmp_path.iterdir()) == [tmp_path / "t.jsonl"]
