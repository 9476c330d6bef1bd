"""No input, fault or tamper may destroy data, hang, or pass off a bad number: one test per rule
(issue "Hardening"), each run the way a user or an attacker would run it."""

from __future__ import annotations

import gzip
import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from support.models import TINY_BERT_CONFIG

from irene.cli import main
from irene.files import atomic_write, exclusive_lock, remove_live_temp_files
from irene.model import IreneRegressor, ModelFormatError, PredictionError
from irene.synthetic import DEFAULT_ARCHS, make_synthetic_trees
from irene.tree import TreeFormatError, read_tree_files, read_trees, write_trees


@pytest.fixture(scope="module")
def m_small(tmp_path_factory, data) -> Path:
    """A trained model directory (the issue's ``m_small``)."""
    directory = tmp_path_factory.mktemp("models") / "m_small"
    assert main(["train", str(data), str(directory), "--set", "epochs=3"]) == 0
    return directory


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def tree_line(**changes) -> dict:
    tree = json.loads(make_synthetic_trees(DEFAULT_ARCHS[:1], batch_sizes=(1,),
                                           seq_lens=(32,))[0].to_json())
    tree.update(changes)
    return tree


# -- 1. writes go only over regular files or new paths ----------------------------------------

def test_output_over_a_fifo_is_refused_and_the_fifo_stays(two, m_small, tmp_path, capsys):
    fifo = tmp_path / "n"
    os.mkfifo(fifo)
    assert main(["predict", str(two), str(fifo), str(m_small)]) == 2
    assert "not a regular file" in capsys.readouterr().err
    assert fifo.is_fifo()


def test_output_through_a_symlink_keeps_the_link(two, m_small, tmp_path):
    target = tmp_path / "real.jsonl"
    target.write_text("")
    link = tmp_path / "link.jsonl"
    link.symlink_to(target)
    assert main(["predict", str(two), str(link), str(m_small)]) == 0
    assert link.is_symlink() and len(read_trees(target)) == 2


def test_atomic_write_refuses_a_directory(tmp_path):
    with pytest.raises(ValueError, match="is a directory"), atomic_write(tmp_path):
        pass


# -- 2. outputs are checked against inputs and other kinds ------------------------------------

def test_report_onto_its_own_input_is_refused(data, tmp_path, capsys):
    copy = tmp_path / "r.jsonl"
    copy.write_bytes(data.read_bytes())
    before = copy.read_bytes()
    assert main(["report", str(copy), "-o", str(copy)]) == 2
    assert "is also an input" in capsys.readouterr().err
    assert copy.read_bytes() == before


def test_predict_onto_the_predictors_own_config_is_refused(two, m_small, capsys):
    before = snapshot(m_small)
    assert main(["predict", str(two), str(m_small / "config.json"), str(m_small)]) == 2
    assert "is also an input" in capsys.readouterr().err
    assert snapshot(m_small) == before
    IreneRegressor.load(m_small)


def test_replacing_a_file_of_another_kind_needs_force(two, m_small, tmp_path, capsys):
    page = tmp_path / "page.html"
    page.write_text("<!DOCTYPE html><html></html>")
    assert main(["predict", str(two), str(page), str(m_small)]) == 2
    assert "--force" in capsys.readouterr().err and page.read_text().startswith("<!DOCTYPE")
    assert main(["predict", str(two), str(page), str(m_small), "--force"]) == 0
    assert len(read_trees(page)) == 2


def test_estimate_does_not_silently_replace_a_trees_file(data, m_small, tiny_config, tmp_path,
                                                         capsys):
    many = tmp_path / "many.jsonl"
    many.write_bytes(data.read_bytes())
    args = ["estimate", str(tiny_config), "--batch-size", "1", "--seq-len", "8", "--predictor",
            str(m_small), "-o", str(many)]
    assert main(args) == 2
    assert "already holds trees" in capsys.readouterr().err
    assert len(read_trees(many)) == 4


# -- 3. a failed train leaves the previous model, whole --------------------------------------

@pytest.mark.parametrize("setting", ["tol=NaN", "epochs=true", "n_iter_no_change=-1",
                                     "leaf_ridge=-1", "seed=abc", "polynomial_degree=1000000",
                                     "feature_sets=model_specs"])
def test_bad_settings_fail_before_anything_is_written(data, m_small, setting, capsys):
    before = snapshot(m_small)
    assert main(["train", str(data), str(m_small), "--set", setting]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and setting.split("=")[0] in err
    assert snapshot(m_small) == before


def test_a_failure_while_saving_keeps_the_previous_model(data, m_small, monkeypatch):
    before = snapshot(m_small)
    import irene.model.persist as persist

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(persist, "save", broken)
    assert main(["train", str(data), str(m_small), "--set", "epochs=2"]) == 2
    assert snapshot(m_small) == before
    assert not [p for p in m_small.parent.iterdir() if p.name.startswith(".")]


def test_train_refuses_a_directory_holding_other_files(data, tmp_path, capsys):
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("years of work")
    assert main(["train", str(data), str(home), "--set", "epochs=2"]) == 2
    assert "is not empty and does not hold an earlier output" in capsys.readouterr().err
    assert (home / "thesis.tex").read_text() == "years of work"


# -- 4. cross-validation outputs are one unit --------------------------------------------------

def test_crossvalidate_replaces_its_output_as_a_unit(data, tmp_path, monkeypatch):
    out = tmp_path / "cv"
    assert main(["crossvalidate", str(data), str(out), "--set", "epochs=2", "--no-plots"]) == 0
    stale = out / "predictions" / "from-an-earlier-run.jsonl"
    stale.write_text("")
    first = json.loads((out / "crossvalidation.json").read_text())

    import irene.cli.crossvalidate as cv

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cv, "_plot", interrupted)
    with pytest.raises(KeyboardInterrupt):
        main(["crossvalidate", str(data), str(out), "--set", "epochs=3"])
    assert json.loads((out / "crossvalidation.json").read_text()) == first  # untouched
    monkeypatch.undo()
    assert main(["crossvalidate", str(data), str(out), "--set", "epochs=3", "--no-plots"]) == 0
    assert not stale.exists()  # nothing of the earlier run is left behind
    assert json.loads((out / "crossvalidation.json").read_text())["config"]["epochs"] == 3
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_crossvalidate_refuses_a_directory_it_did_not_write(data, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("keep me")
    assert main(["crossvalidate", str(data), str(tmp_path), "--no-plots"]) == 2
    assert (tmp_path / "notes.txt").read_text() == "keep me"


# -- 5. trace appends stay readable -------------------------------------------------------------

def test_a_torn_last_line_is_repaired_and_the_sweep_resumes(tiny_config, tmp_path, capsys):
    out = tmp_path / "trees.jsonl"
    base = ["trace", str(tiny_config), "--no-timing", "--offline", "-o", str(out)]
    assert main([*base, "--batch-size", "1", "--seq-len", "4"]) == 0
    good = out.read_bytes()
    out.write_bytes(good + good[: len(good) // 2])  # a crash half-way through the next tree
    assert main([*base, "--batch-size", "2", "--seq-len", "4"]) == 0
    assert "torn last line" in capsys.readouterr().err
    assert [t.batch_size for t in read_trees(out)] == [1, 2]


def test_gzip_output_is_appended_as_members_and_reads_back(tiny_config, tmp_path):
    out = tmp_path / "trees.jsonl.gz"
    base = ["trace", str(tiny_config), "--no-timing", "--offline", "-o", str(out)]
    assert main([*base, "--batch-size", "1", "--seq-len", "4"]) == 0
    assert main([*base, "--batch-size", "2", "--seq-len", "4"]) == 0
    assert main([*base, "--batch-sizes", "1,2", "--seq-len", "4"]) == 0  # all done: resumes
    with gzip.open(out, "rt") as handle:
        assert len(handle.read().splitlines()) == 2
    assert [t.batch_size for t in read_trees(out)] == [1, 2]


# -- 6. one writer per output ------------------------------------------------------------------

def test_a_second_writer_is_refused_while_the_first_holds_the_output(tiny_config, tmp_path,
                                                                    capsys):
    out = tmp_path / "trees.jsonl"
    argv = ["trace", str(tiny_config), "--no-timing", "--offline", "-o", str(out),
            "--seq-len", "4"]
    with exclusive_lock(out):
        assert main(argv) == 2
    assert "another irene process" in capsys.readouterr().err
    assert not out.exists()
    assert main(argv) == 0


# -- 7. the resume key is everything that changes the tree ------------------------------------

def test_resume_traces_again_when_a_setting_changes(tiny_config, tmp_path, capsys):
    out = tmp_path / "trees.jsonl"
    base = ["trace", str(tiny_config), "--no-timing", "--offline", "-o", str(out),
            "--batch-size", "1", "--seq-len", "4"]
    assert main(base) == 0
    assert main([*base, "--attn", "sdpa"]) == 0
    assert main([*base, "--dtype", "bfloat16"]) == 0
    assert main(base) == 0
    assert "already traced" in capsys.readouterr().err
    keys = [t.key for t in read_trees(out)]
    assert len(keys) == 3 and len(set(keys)) == 3
    assert {k.attn for k in keys} == {"eager", "sdpa"} and "bfloat16" in {k.dtype for k in keys}


# -- 8. bounded, validated inputs ------------------------------------------------------------

def test_absurd_feature_magnitudes_are_refused_at_once(tmp_path, capsys, monkeypatch):
    import irene.model

    def no_fit(*args, **kwargs):
        raise AssertionError("the trees were not refused before fitting")

    monkeypatch.setattr(irene.model, "make_predictor", no_fit)  # refused before any work
    line = tree_line()
    line["frontend_tree"]["flops"] = 1e308
    (tmp_path / "big.jsonl").write_text(json.dumps(line) + "\n")
    assert main(["train", str(tmp_path / "big.jsonl"), str(tmp_path / "m")]) == 2
    assert "big.jsonl:1" in capsys.readouterr().err and not (tmp_path / "m").exists()


def test_tampered_model_settings_cannot_make_predict_run_away(m_small, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("config.json", "tensors.safetensors"):
        (bad / name).write_bytes((m_small / name).read_bytes())
    meta = json.loads((bad / "config.json").read_text())
    meta["config"]["polynomial_degree"] = 10**6
    (bad / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ModelFormatError, match="polynomial_degree"):
        IreneRegressor.load(bad)


@pytest.mark.parametrize("kind", ["fifo", "zero"])
def test_a_config_that_is_not_a_regular_file_is_refused_without_blocking(m_small, tmp_path,
                                                                         kind):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "tensors.safetensors").write_bytes((m_small / "tensors.safetensors").read_bytes())
    if kind == "fifo":
        os.mkfifo(bad / "config.json")
    else:
        (bad / "config.json").symlink_to("/dev/zero")
    result: list[BaseException] = []
    worker = threading.Thread(target=lambda: _load_into(bad, result), daemon=True)
    worker.start()
    worker.join(timeout=10)
    assert not worker.is_alive(), "loading blocked"
    assert isinstance(result[0], ModelFormatError) and "not a regular file" in str(result[0])


def _load_into(directory: Path, result: list) -> None:
    try:
        IreneRegressor.load(directory)
    except BaseException as exc:
        result.append(exc)


# -- 9. a prediction is a real number or an error naming the node ------------------------------

def test_negative_features_are_refused_by_the_reader(tmp_path):
    line = tree_line()
    line["frontend_tree"]["child_nodes_obj"][0]["times_mean"] = -1
    (tmp_path / "neg.jsonl").write_text(json.dumps(line) + "\n")
    with pytest.raises(TreeFormatError, match="times_mean.*must not be negative"):
        read_trees(tmp_path / "neg.jsonl")


def test_a_non_positive_prediction_is_an_error_that_names_the_node(m_small, two):
    model = IreneRegressor.load(m_small)
    model.state_.leaf_theta = -np.abs(model.state_.leaf_theta) - 1.0  # every leaf < 0
    with pytest.raises(PredictionError, match=r"two.jsonl:1: node 'root\..*' .*not a positive"):
        model.predict(read_trees(two))


# -- 10. one tree per key ------------------------------------------------------------------

def test_train_refuses_duplicate_trees_before_saving(two, tmp_path, capsys):
    dup = tmp_path / "dup.jsonl"
    dup.write_text(two.read_text() + two.read_text())
    assert main(["train", str(dup), str(tmp_path / "m")]) == 2
    assert "appears twice" in capsys.readouterr().err and not (tmp_path / "m").exists()


def test_evaluate_refuses_a_duplicated_prediction(two, m_small, tmp_path, capsys):
    pred = tmp_path / "pred.jsonl"
    assert main(["predict", str(two), str(pred), str(m_small)]) == 0
    pred.write_text(pred.read_text() + pred.read_text().splitlines()[0] + "\n")
    assert main(["evaluate", str(two), str(pred)]) == 2
    assert "appears twice" in capsys.readouterr().err


# -- 11. wattmeter logs are validated before measuring -------------------------------------------

@pytest.mark.parametrize("watts, field", [("nan", "watts"), ("inf", "watts"), ("1e9", "watts"),
                                          ("-5", "watts")])
def test_a_bad_wattmeter_log_fails_before_measuring(tiny_config, tmp_path, capsys, watts, field):
    log = tmp_path / "power.csv"
    now = time.time()
    log.write_text(f"timestamp,watts\n{now - 2},100\n{now - 1},{watts}\n")
    out = tmp_path / "trees.jsonl"
    assert main(["trace", str(tiny_config), "--offline", "-o", str(out), "--batch-size", "1",
                 "--seq-len", "4", "--meter", f"wattmeter:{log}"]) == 2
    err = capsys.readouterr().err
    assert f"power.csv:3: {field}: must be a finite number from 0 to 100000" in err \
        and err.count("\n") == 1
    assert not out.exists()


# -- 12. user errors are one line and exit 2 -------------------------------------------------

def test_a_very_deep_tree_is_a_clear_error(tmp_path):
    depth = 5000
    opening = "".join(f'{{"id": "{k}", "scope": "x", "parent_name": "", "level": 0, '
                      '"instance_type": "M", "type": "module", "child_nodes_obj": ['
                      for k in range(depth))
    leaf = ('{"id": "leaf", "scope": "x", "parent_name": "", "level": 0, '
            '"instance_type": "L", "type": "ml", "child_nodes_obj": []}')
    text = ('{"model_name": "m", "batch_size": 1, "seq_len": 1, "frontend_tree": '
            + opening + leaf + "]}" * depth + "}\n")
    (tmp_path / "deep.jsonl").write_text(text)
    with pytest.raises(TreeFormatError, match="deep.jsonl:1"):
        read_trees(tmp_path / "deep.jsonl")


def test_energies_below_a_femtojoule_are_a_unit_mistake(tmp_path):
    line = tree_line()
    line["frontend_tree"]["ground_truth_energy"] = 1e-300
    (tmp_path / "tiny.jsonl").write_text(json.dumps(line) + "\n")
    with pytest.raises(TreeFormatError, match="below a femtojoule"):
        read_trees(tmp_path / "tiny.jsonl")


def test_inconsistent_level_or_parent_is_refused(tmp_path):
    line = tree_line()
    line["frontend_tree"]["child_nodes_obj"][0]["level"] = 7
    (tmp_path / "lvl.jsonl").write_text(json.dumps(line) + "\n")
    with pytest.raises(TreeFormatError, match="field 'level'"):
        read_trees(tmp_path / "lvl.jsonl")


@pytest.mark.parametrize("argv", [
    ["trace", "gpt2", "-o", "x.jsonl", "--batch-size", "0"],
    ["trace", "gpt2", "-o", "x.jsonl", "--seq-lens", "8,-1"],
    ["estimate", "gpt2", "--batch-size", "-2", "--seq-len", "8", "--predictor", "m"],
])
def test_non_positive_sizes_are_refused(argv, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2 and "positive" in capsys.readouterr().err


def test_os_errors_are_one_line(data, tmp_path, capsys):
    assert main(["predict", str(data), str(tmp_path), str(tmp_path / "nothing")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):  # root ignores permissions
            pytest.skip("running as root: a read-only directory is writable")
        assert main(["export", str(data), "-o", str(locked / "n.csv")]) == 2
        assert capsys.readouterr().err.count("\n") == 1
    finally:
        locked.chmod(0o700)


# -- 13. temporary files ----------------------------------------------------------------------

def test_temp_files_of_an_interrupted_write_are_removed_and_ignored(data, tmp_path):
    target = tmp_path / "out.jsonl"
    with pytest.raises(SystemExit), atomic_write(target) as handle:
        handle.write("half")
        assert [p for p in tmp_path.iterdir() if p.name.startswith(".out.jsonl.")]
        remove_live_temp_files()  # what the SIGTERM handler does, before it exits
        raise SystemExit(143)
    assert not list(tmp_path.iterdir())
    directory = tmp_path / "trees"
    directory.mkdir()
    (directory / "a.jsonl").write_bytes(data.read_bytes())
    (directory / ".a.jsonl.abcd1234.tmp").write_text("{torn")
    assert len(read_tree_files([directory])) == len(read_trees(data))


def test_sigterm_leaves_no_temp_file(data, tmp_path):
    import signal
    import subprocess
    import sys

    script = tmp_path / "slow.py"
    script.write_text(
        "import sys, time\n"
        "from irene.files import atomic_write, remove_temp_files_on_signals\n"
        "remove_temp_files_on_signals()\n"
        f"with atomic_write({str(tmp_path / 'out.txt')!r}) as h:\n"
        "    h.write('x'); print('writing', flush=True); time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    assert sorted(p.name for p in tmp_path.iterdir()) == ["slow.py"]


# -- 17. what a person types ------------------------------------------------------------------

@pytest.mark.parametrize("command", ["report", "explain", "plot", "export"])
def test_synthetic_demo_works_in_every_command_that_reads_trees(command, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = {"report": ["-o", "r.html"], "explain": ["--tree", "0"], "plot": ["-o", "figs"],
           "export": ["-o", "nodes.csv"]}[command]
    assert main([command, "synthetic-demo", *out]) == 0


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.startswith("irene ")


# -- 14. the report's scatter samples every node type fairly ----------------------------------

def test_scatter_keeps_every_node_type_when_sampling():
    from support.trees import bert_like_tree

    from irene.evaluation import pair_within
    from irene.report.html import sample_per_type, scatter_svg

    trees = [bert_like_tree(layers=2, seed=s) for s in range(40)]
    paired = pair_within(trees)
    rows = sample_per_type(paired, 90)
    counts = {k: int((paired.node_type[rows] == k).sum()) for k in ("model", "module", "ml")}
    assert len(rows) == 90 and counts["model"] == 30 and counts["ml"] == 30, counts
    svg = scatter_svg(trees, max_points=90)
    assert "sampled evenly within each node type" in svg and "30 of" in svg


# -- 15. figures say what they draw --------------------------------------------------------

def test_energy_tick_labels_are_distinct_on_a_narrow_axis():
    from irene.report.figures import EnergyFormatter

    labels = EnergyFormatter().format_ticks([1.6, 1.8, 2.0, 2.2, 2.4])
    assert len(set(labels)) == 5 and labels[2] == "2.0 J"


def test_energy_vs_seq_len_subtitle_names_only_the_lines_drawn(tmp_path):
    from support.trees import bert_like_tree

    from irene.report import plots

    trees = [bert_like_tree(seq_len=s, measured=False) for s in (16, 32)]
    titles: list[str] = []
    original = plots.Figure.suptitle

    def record(self, text, *args, **kwargs):
        titles.append(text)
        return original(self, text, *args, **kwargs)

    plots.Figure.suptitle = record
    try:
        plots.plot_energy_vs_seq_len(trees, tmp_path / "e.png")
    finally:
        plots.Figure.suptitle = original
    assert titles == ["Energy vs sequence length (dashed: predicted)"]


# -- 16. outputs say which hardware the energy is for ----------------------------------------

def test_predictions_name_the_hardware_of_their_training_data(data, tmp_path, capsys):
    trees = read_trees(data)
    for tree in trees:
        tree.meta.update(synthetic=False, meter="nvml", device="cuda:0",
                         device_name="NVIDIA H100 80GB HBM3")
    measured = tmp_path / "measured.jsonl"
    write_trees(trees, measured)
    model = IreneRegressor(epochs=2, feature_sets=["model_specs"]).fit(read_trees(measured))
    assert model.training_data.hardware == ["NVIDIA H100 80GB HBM3"]
    target = read_trees(data)[0]
    target.meta.update(synthetic=False, meter="none", device="cpu", device_name="laptop-cpu")
    (predicted,) = model.predict([target])
    write_trees([predicted], tmp_path / "p.jsonl")
    assert main(["explain", str(tmp_path / "p.jsonl"), "--depth", "0"]) == 0
    out = capsys.readouterr().out
    assert "energy for: NVIDIA H100 80GB HBM3 (meter: nvml)" in out
    assert "laptop-cpu" not in out and "SYNTHETIC" not in out


def test_a_predictor_trained_in_python_on_synthetic_data_labels_its_predictions(data):
    from irene.datasets import is_synthetic

    model = IreneRegressor(epochs=2).fit(read_trees(data))
    target = read_trees(data)[0]
    target.meta.pop("synthetic")
    target.meta["meter"] = "none"
    assert not is_synthetic([target])
    assert is_synthetic(model.predict([target]))


# -- 18. timing conditions --------------------------------------------------------------------

def test_timings_record_threads_and_load_and_warn_when_busy(monkeypatch):
    import irene.measure.conditions as conditions
    from irene.measure import Protocol
    from irene.tracing import trace_model

    monkeypatch.setattr(conditions, "_load", lambda: 7.5)
    quick = Protocol(warmup=0, runs=1, min_run_seconds=0.0)  # threads left at its default
    with pytest.warns(UserWarning, match="the machine was busy"):
        tree = trace_model(_tiny_bert(), 1, 4, protocol=quick)
    record = tree.meta["timing_conditions"]
    assert record["threads"] == 1 and record["load_before"] == 7.5
    assert any("busy" in w for w in record["warnings"])


def _tiny_bert():
    from transformers import BertConfig

    from irene.tracing import build_model

    return build_model(BertConfig(**{k: v for k, v in TINY_BERT_CONFIG.items()
                                     if k != "model_type"}))


# -- 19. conveniences ---------------------------------------------------------------------------

def test_export_writes_one_row_per_node(data, tmp_path):
    import csv

    out = tmp_path / "nodes.csv"
    assert main(["export", str(data), "-o", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    trees = read_trees(data)
    assert len(rows) == sum(1 for t in trees for _ in t.nodes())
    root = rows[0]
    assert root["type"] == "model" and root["path"] == root["scope"]
    leaf = next(r for r in rows if r["type"] == "ml")
    assert leaf["path"].count(" > ") == int(leaf["level"])
    assert float(root["ground_truth_energy_j"]) == trees[0].root.ground_truth_energy


def test_json_outputs_parse(data, m_small, tmp_path, capsys):
    assert main(["explain", str(data), "--tree", "1", "--json"]) == 0
    explained = json.loads(capsys.readouterr().out)
    assert explained["tree"]["batch_size"] == 8 and explained["nodes"][0]["type"] == "model"
    pred = tmp_path / "p.jsonl"
    assert main(["predict", str(data), str(pred), str(m_small)]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(data), str(pred), "--json"]) == 0
    assert set(json.loads(capsys.readouterr().out)) == {"ml", "module", "model"}


# -- schemas -------------------------------------------------------------------------------

def test_a_predictor_refuses_trees_of_another_schema(data, tmp_path, capsys):
    trees = read_trees(data)
    for tree in trees:
        tree.meta["schema"] = {"name": "irene2021", "version": 1}
    write_trees(trees, tmp_path / "irene2021.jsonl")
    assert main(["train", str(tmp_path / "irene2021.jsonl"), str(tmp_path / "m"),
                 "--estimator", "structure"]) == 0
    capsys.readouterr()
    assert main(["predict", str(data), str(tmp_path / "p.jsonl"), str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert "schema irene v1" in err and "irene2021 v1" in err and "--schema irene2021" in err
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text((tmp_path / "irene2021.jsonl").read_text().splitlines()[0] + "\n"
                     + data.read_text().splitlines()[1] + "\n")
    assert main(["train", str(mixed), str(tmp_path / "m2")]) == 2
    assert "train on trees of one schema" in capsys.readouterr().err
    bad = json.loads(data.read_text().splitlines()[0])
    bad["schema"] = {"name": "irene2099", "version": 1}
    (tmp_path / "bad.jsonl").write_text(json.dumps(bad) + "\n")
    with pytest.raises(TreeFormatError, match="field 'schema'"):
        read_trees(tmp_path / "bad.jsonl")
