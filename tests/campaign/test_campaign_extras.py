"""Campaigns over Ray (a local instance on the CPU) and tracked in MLflow (a local file store).

Skipped cleanly where the ``ray`` / ``mlflow`` extras are not installed.
"""

from __future__ import annotations

import os
import signal

import pytest
from support.campaign import quiet, write_plan
from support.paths import ROOT

from irene.campaign import RunOptions, load_plan, run_plan
from irene.cli import main
from irene.tree import read_trees

FAST = {"warmup": 0, "runs": 1, "min_run_seconds": 0.001}


def _structure(tree) -> list:
    return [(n.scope, n.type, n.instance_type, n.level, n.parent_name, n.features["flops"],
             n.features["mem_bytes"], n.features["num_parameters"], n.extra.get("signature"),
             n.extra.get("calls"), n.extra.get("input_shapes")) for n in tree.nodes()]


# -- Ray ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in [str(ROOT), os.environ.get("PYTHONPATH", "")] if p)
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=128 * 2**20,
             log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.mark.ray
@pytest.mark.slow  # a local Ray cluster: its workers each import torch (tens of seconds)
def test_ray_gives_the_same_trees_and_retries_a_killed_worker(tmp_path, local_ray):
    local = load_plan(write_plan(tmp_path / "local", models=["tiny/roberta"],
                                 protocol={"warmup": 0, "runs": 1, "min_run_seconds": 0.05}))
    run_plan(local, quiet())
    killed: list[int] = []

    def kill_first_worker(event: dict) -> None:
        if event.get("event") == "started" and not killed:
            killed.append(event["pid"])
            os.kill(event["pid"], signal.SIGKILL)

    distributed = load_plan(write_plan(tmp_path / "ray", models=["tiny/roberta"],
                                       protocol={"warmup": 0, "runs": 1,
                                                 "min_run_seconds": 0.05}))
    result = run_plan(distributed, RunOptions(progress=False, ray="",
                                              on_event=kill_first_worker))
    assert killed and result.retried, "a worker was killed mid-item and its item retried"
    (label, reasons), = result.retried.items()
    assert "WorkerCrashedError" in reasons[0] or "died" in reasons[0].lower()
    assert result.written == 2 and not result.failed
    a = {t.key: t for t in read_trees(local.output)}
    b = {t.key: t for t in read_trees(distributed.output)}
    assert set(a) == set(b)
    for key, tree in a.items():
        assert _structure(tree) == _structure(b[key])
    assert all(t.meta["meter"] == "simulated" for t in b.values())


@pytest.mark.ray
@pytest.mark.slow  # the same local cluster; the --ray option's errors are quick tests below
def test_ray_resumes_and_measures_nothing_new(tmp_path, local_ray):
    plan = load_plan(write_plan(tmp_path, models=["tiny/gpt2"], protocol=FAST))
    first = run_plan(plan, RunOptions(progress=False, ray=""))
    assert first.written == 2
    again = run_plan(plan, RunOptions(progress=False, ray=""))
    assert (again.written, again.already, again.measured) == (0, 2, 0)


def test_unreachable_ray_address_is_an_error_and_writes_nothing(tmp_path, capsys):
    pytest.importorskip("ray")
    path = write_plan(tmp_path, protocol=FAST)
    assert main(["run", str(path), "--ray", "127.0.0.1:9", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "cannot reach the Ray cluster at 127.0.0.1:9" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_ray_missing_is_a_clear_error(tmp_path, monkeypatch, capsys):
    import builtins

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    path = write_plan(tmp_path, protocol=FAST)
    assert main(["run", str(path), "--ray", "--no-progress"]) == 2
    assert "pip install -e '.[ray]'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# -- MLflow -------------------------------------------------------------------------------------

@pytest.mark.mlflow
def test_mlflow_logs_one_run_with_parameters_metrics_and_artifacts(tmp_path):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    store = tmp_path / "mlruns"
    plan = load_plan(write_plan(tmp_path, models=["tiny/gpt2"], protocol=FAST))
    result = run_plan(plan, RunOptions(progress=False, mlflow=str(store)))
    assert result.written == 2
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(tracking_uri=store.as_uri())
    experiment = client.get_experiment_by_name("test")
    (run,) = client.search_runs([experiment.experiment_id])
    params = run.data.params
    assert params["meter"] == "simulated" and params["protocol.runs"] == "1"
    assert params["models"] == "tiny/gpt2" and "version.torch" in params and params["hardware"]
    history = client.get_metric_history(run.info.run_id, "trees_done")
    assert [m.value for m in history] == [1.0, 2.0]
    assert client.get_metric_history(run.info.run_id, "energy_per_tree_j")[0].value > 0
    assert run.data.metrics["trees_written"] == 2
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"trees.jsonl", "trees.measurements.json", "plan.yaml", "trees.summary.json",
            "summary.txt"} <= artifacts
    assert run.info.status == "FINISHED"


def test_mlflow_store_that_cannot_be_written_is_an_error(tmp_path, capsys):
    pytest.importorskip("mlflow")
    path = write_plan(tmp_path, protocol=FAST)
    (tmp_path / "a-file").write_text("not a directory")
    bad = f"file:{tmp_path / 'a-file' / 'mlruns'}"
    assert main(["run", str(path), "--mlflow", bad, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "MLflow store" in err and "is not a directory" in err
    assert not (tmp_path / "out").exists()
