"""Calibration to other hardware: a known per-device change is recovered from a few trees."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from support.trees import learned_tree

from irene.cli import main
from irene.evaluation import percentage_errors
from irene.model import IreneRegressor
from irene.model.calibrate import CalibrationRefused, calibrate, check_improves
from irene.tree import Tree, read_trees, write_trees

#: device B: Linear leaves cost 0.6 × A^1.05, the others 0.85 × A^0.97 (J), and modules do
#: 1.5 × A's overhead: not a constant multiple of A
CHANGE = {"linear": (0.6, 1.05), "softmax": (0.85, 0.97), "layernorm": (0.85, 0.97)}
OVERHEAD = 1.5
SHAPES = {"a": (2, 64), "b": (3, 96), "c": (4, 128), "d": (2, 160)}


def on_device_b(tree: Tree) -> Tree:
    """The same tree measured on device B (leaves changed per type; modules recomputed with
    A's 1.03 child weight and 1.5 × A's overhead)."""
    tree = tree.copy()

    def fill(node) -> float:
        if node.is_leaf:
            scale, power = CHANGE[node.instance_type.lower()]
            node.ground_truth_energy = scale * node.ground_truth_energy ** power
            return node.ground_truth_energy
        children = [fill(c) for c in node.children]
        original_overhead = node.ground_truth_energy - 1.03 * sum(
            c for c in _original_children(node))
        node.ground_truth_energy = 1.03 * sum(children) + OVERHEAD * original_overhead
        return node.ground_truth_energy

    def _original_children(node):
        return [c.extra["device_a"] for c in node.children]

    for node in tree.nodes():
        node.extra["device_a"] = node.ground_truth_energy
    fill(tree.root)
    for node in tree.nodes():
        node.extra.pop("device_a")
    tree.meta.update(device_name="device B", meter="simulated")
    return tree


def forest(models, batches=(1, 4, 16), seqs=(16, 64, 128)) -> list[Tree]:
    return [learned_tree(m, *SHAPES[m], b, s) for m in models for b in batches for s in seqs]


@pytest.fixture(scope="module")
def trained():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return IreneRegressor(feature_sets=["model_specs"]).fit(forest("abc"))


def test_calibration_recovers_a_known_device_change(trained):
    target = [on_device_b(t) for t in forest("d")]  # a model the calibration never saw
    few = [on_device_b(t) for t in forest("ab", batches=(4,), seqs=(64,))]  # two trees
    before = percentage_errors(target, trained.predict(target))
    calibrated = calibrate(trained, few)
    after = percentage_errors(target, calibrated.predict(target))
    assert before["model"] > 15 and before["ml"] > 15, before
    assert max(after.values()) < 4.0, after
    # the simplest alternative: one constant factor fitted on the same two trees
    scale = np.median([t.root.ground_truth_energy / p.root.predicted_energy
                       for t, p in zip(few, trained.predict(few), strict=True)])
    constant = trained.predict(target)
    for tree in constant:
        for node in tree.nodes():
            node.predicted_energy *= scale
    assert percentage_errors(target, constant)["ml"] > 2 * after["ml"]
    cal = calibrated.state_.calibration
    # the per-type change at a 20 µJ leaf; Linear's exponent too (the only type whose leaves
    # span several sizes in the two trees: softmax and norms have one size each there)
    for kind, (scale, power) in CHANGE.items():
        row = cal.leaf_types.index(kind)
        fitted = np.exp(cal.log_scale[row]) * 2e-5 ** cal.exponent[row]
        assert fitted == pytest.approx(scale * 2e-5 ** power, rel=0.05)
    assert cal.exponent[cal.leaf_types.index("linear")] == pytest.approx(1.05, abs=0.03)


def test_calibrate_cli_writes_a_model_that_records_both(trained, tmp_path, capsys):
    trained.save(tmp_path / "base")
    write_trees([on_device_b(t) for t in forest("ab", batches=(4,), seqs=(64,))],
                tmp_path / "b.jsonl")
    assert main(["calibrate", str(tmp_path / "base"), str(tmp_path / "b.jsonl"),
                 str(tmp_path / "cal")]) == 0
    assert "overhead x" in capsys.readouterr().out
    loaded = IreneRegressor.load(tmp_path / "cal")
    assert loaded.state_.calibration.calibrated_on.hardware == ["device B"]
    write_trees(forest("d", batches=(1,), seqs=(16,)), tmp_path / "d.jsonl")
    assert main(["predict", str(tmp_path / "d.jsonl"), str(tmp_path / "p.jsonl"),
                 str(tmp_path / "cal")]) == 0
    stamp = read_trees(tmp_path / "p.jsonl")[0].meta["predictor"]
    assert stamp["calibrated_on"]["hardware"] == ["device B"]
    capsys.readouterr()
    assert main(["explain", str(tmp_path / "p.jsonl"), "--depth", "0", "--json"]) == 0
    assert "calibrated to it" in json.loads(capsys.readouterr().out)["energy_for"]
    assert main(["calibrate", str(tmp_path / "base"), str(tmp_path / "b.jsonl"),
                 str(tmp_path / "base")]) == 2
    capsys.readouterr()
    assert main(["calibrate", str(tmp_path / "base"), str(tmp_path / "b.jsonl"),
                 str(tmp_path / "terms"), "--form", "terms"]) == 2
    assert "--form terms" in capsys.readouterr().err and not (tmp_path / "terms").exists()


def test_calibration_refuses_trees_without_energy(trained):
    tree = forest("a", batches=(1,), seqs=(16,))[0]
    tree.root.ground_truth_energy = None
    with pytest.raises(ValueError, match="ground_truth_energy"):
        calibrate(trained, [tree])


def test_calibrate_refuses_a_calibration_that_worsens_its_own_trees(trained, tmp_path, capsys):
    """Leaves measured at twice device A's energy under unchanged modules and roots: the leaf
    correction doubles every leaf and the model level gets worse on the very trees it was fitted
    on, so the command refuses (exit 2, one line naming the file, nothing written)."""
    trained.save(tmp_path / "base")
    few = [t.copy() for t in forest("ab", batches=(4,), seqs=(64,))]
    for tree in few:
        for node in tree.nodes():
            if node.is_leaf:
                node.ground_truth_energy *= 2.0
        tree.meta.update(device_name="device C", meter="simulated")
    write_trees(few, tmp_path / "c.jsonl")
    calibrated = calibrate(trained, few)
    before = percentage_errors(few, trained.predict(few))
    after = percentage_errors(few, calibrated.predict(few))
    assert after["model"] > before["model"]  # the case the guard exists for
    capsys.readouterr()
    assert main(["calibrate", str(tmp_path / "base"), str(tmp_path / "c.jsonl"),
                 str(tmp_path / "cal")]) == 2
    # the synthetic trees bring their own NOTE line; the refusal is one line
    err = [line for line in capsys.readouterr().err.strip().splitlines()
           if not line.startswith("NOTE: this data set is SYNTHETIC")]
    assert len(err) == 1 and "c.jsonl" in err[0] and "does not improve" in err[0], err
    assert not (tmp_path / "cal").exists()


def test_check_improves_accepts_only_a_lower_model_level_error():
    check_improves({"ml": 9.0, "module": 9.0, "model": 5.0}, {"ml": 9.5, "module": 9.0,
                                                              "model": 4.9})
    for after in (5.0, 5.1):
        with pytest.raises(CalibrationRefused, match="5.00 % -> "):
            check_improves({"ml": 1.0, "module": 1.0, "model": 5.0},
                           {"ml": 0.5, "module": 0.5, "model": after})
