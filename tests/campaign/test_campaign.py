"""Campaigns (``irene run``): plans, the shared measurement cache, resume, dry run, budget.

Everything runs on the CPU with the simulated meter and tiny models (configs/plans/tiny).
Ray and MLflow are in test_campaign_extras.py.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from support.campaign import FAST, TINY, quiet, write_plan
from support.paths import ROOT as REPO

from irene.campaign import (
    BudgetTooSmall,
    CampaignError,
    PlanError,
    RunOptions,
    cache_path,
    dry_run,
    load_plan,
    run_plan,
)
from irene.campaign.cache import CacheContext, CampaignCache
from irene.campaign.features import FeaturePass
from irene.campaign.plan import PlanItem
from irene.campaign.schedule import cell_round, priority_order
from irene.campaign.summary import children_ratio, spread_summary
from irene.cli import main
from irene.measure.protocol import Measurement
from irene.tracing import build_model, trace_model
from irene.tree import Node, Tree, place_nodes, read_trees

# -- plans --------------------------------------------------------------------------------------


def workloads(plan):
    """The workloads of a plan's items, in order."""
    return [item.workload for item in plan.items()]

def test_shipped_plans_are_valid():
    tiny = load_plan(REPO / "configs/plans/tiny-cpu.yaml")
    assert len(tiny.items()) == 16 and tiny.meter == "simulated"
    assert {i.model for i in tiny.items()} == {"tiny/bert", "tiny/roberta", "tiny/gpt2",
                                               "tiny/distilgpt2"}
    assert all(Path(i.source).is_dir() for i in tiny.items())  # resolved beside the plan
    reference = load_plan(REPO / "configs/plans/reference-gpu.yaml")
    assert reference.device == "cuda" and reference.meter == "nvml"
    assert reference.estimate_profile == "h100-sxm"
    assert {i.workload.dtype for i in reference.items()} == {"float16", "float32"}
    assert {(w.batch_size, w.seq_len) for w in workloads(reference) if w.dtype == "float32"} \
        == {(8, 128)}
    models = {m.name for m in reference.models}
    assert {"bert-base-uncased", "distilbert-base-uncased", "roberta-base", "gpt2",
            "distilgpt2", "openai-gpt"} <= models
    assert {"EleutherAI/pythia-410m", "codeparrot/codeparrot-small"} <= models
    decode = load_plan(REPO / "configs/plans/reference-gpu-decode.yaml")
    assert decode.phase == "decode" and decode.context_lens == [128, 512]
    assert {(w.seq_len, w.context_len) for w in workloads(decode)} == {(1, 128), (1, 512)}
    train = load_plan(REPO / "configs/plans/reference-gpu-train.yaml")
    assert {(i.model, i.workload.phase, i.workload.optimizer) for i in train.items()} == {
        ("bert-base-uncased", "train", "adamw"), ("gpt2", "train", "adamw")}


BASE_PLAN = {"output": "output: out.jsonl", "models": "models: [gpt2]",
             "grid": "grid: {batch_sizes: [1], seq_lens: [8]}"}


@pytest.mark.parametrize("lines, message", [
    ({"protocl": "protocl: {}"}, r"plan.yaml:4: protocl: unknown key; did you mean 'protocol'"),
    ({"grid": "grid: {batch_sizes: [1, x], seq_lens: [8]}"},
     r"plan.yaml:3: grid.batch_sizes\[1\]: must be a positive integer"),
    ({"models": "models: [gpt2, nosuch]"}, r"plan.yaml:2: models\[1\]: unknown model 'nosuch'"),
    ({"grid": "grid: {batch_sizes: [1], seq_lens: [4096]}"},
     r"grid.seq_lens: sequence length 4096 exceeds the 1024 positions of gpt2"),
    ({"protocol": "protocol: {runs: 0}"}, r"protocol.runs: Protocol.runs must be >= 1"),
    ({"protocol": "protocol: {runs: two}"}, r"protocol.runs: must be an integer"),
    ({"phase": "phase: decode"}, r"context_lens: must be >= 1 with phase decode"),
    ({"phase": "phase: decode\ncontext_lens: [16]"},
     r"plan.yaml:3: grid.seq_lens: must be 1: phase decode feeds one token per sequence"),
    ({"phase": "phase: forward\ncontext_lens: [16]"}, r"context_lens: needs phase prefill or "
                                                      r"decode"),
    ({"phase": "phase: decode\ncontext_lens: [0]"}, r"context_lens\[0\]: must be >= 1 with "
                                                    r"phase decode"),
    ({"phase": "phase: prefill\ncontext_lens: [1020]"},
     r"context_lens: context length 1020 \+ sequence length 8 exceeds the 1024 positions"),
    ({"phase": "phase: forward\noptimizer: adamw"}, r"optimizer: needs phase train"),
    ({"phase": "phase: train\noptimizer: lion"}, r"optimizer: must be one of adamw, sgd"),
    ({"phase": "phase: sideways"}, r"phase: must be one of forward, prefill, decode, train"),
    ({"dtypes": "dtypes: [float64]"}, r"dtypes\[0\]: must be one of float32, float16, bfloat16"),
    ({"meter": "meter: nvml\ntiming: false"}, r"meter: a meter needs the replays"),
    ({"meter": "meter: geiger"}, r"meter: unknown meter 'geiger'"),
    ({"device": "device: tpu"}, r"device: must be cpu, cuda or cuda:N"),
    ({"output": "output: trees.csv"}, r"output: the output must be a .jsonl or .jsonl.gz file"),
    ({"models": "models: [gpt2]\nmodels: [bert-base-uncased]"},
     r"plan.yaml:3: models: duplicate key"),
    ({"models": "models: []"}, r"models: must be a non-empty list"),
])
def test_bad_plans_name_file_line_and_key(tmp_path, lines, message):
    text = "\n".join([lines.get(k, v) for k, v in BASE_PLAN.items()] +
                     [v for k, v in lines.items() if k not in BASE_PLAN]) + "\n"
    path = tmp_path / "plan.yaml"
    path.write_text(text)
    with pytest.raises(PlanError, match=message):
        load_plan(path)


def test_line_numbers_point_at_the_key(tmp_path):
    path = tmp_path / "plan.yaml"
    path.write_text("output: out.jsonl\nmodels:\n  - gpt2\ngrid:\n  batch_sizes: [1]\n"
                    "  seq_lens: [8]\nprotocol:\n  warmup: 1\n  runs: -3\n")
    with pytest.raises(PlanError) as err:
        load_plan(path)
    assert str(err.value).startswith(f"{path}:9: protocol.runs:")


def test_bad_plan_on_the_command_line_exits_2_and_writes_nothing(tmp_path, capsys):
    path = write_plan(tmp_path, grid={"batch_sizes": [0], "seq_lens": [4]})
    assert main(["run", str(path), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "grid.batch_sizes[0]: must be a positive" in err
    assert not (tmp_path / "out").exists()


def test_items_carry_the_tree_key_fields(tmp_path):
    plan = load_plan(write_plan(tmp_path, dtypes=["float32", "bfloat16"], attn=["eager", "sdpa"],
                                models=["tiny/bert", {"name": "tiny/gpt2", "seq_lens": [4]}]))
    items = plan.items()
    assert len(items) == 2 * 2 * 2 + 1 * 2 * 2
    item = items[0]
    assert (item.workload.phase, item.workload.context_len, item.workload.optimizer) == \
        ("forward", 0, None)
    assert set(item.to_dict()) == {"model", "batch_size", "seq_len", "dtype", "attn", "device",
                                   "phase", "context_len", "optimizer", "source"}
    assert PlanItem.from_dict(item.to_dict()) == item


def test_decode_and_train_plans_make_items_of_their_phase(tmp_path):
    decode = load_plan(write_plan(tmp_path, models=["tiny/gpt2"], phase="decode",
                                  grid={"batch_sizes": [1, 2], "seq_lens": [1]},
                                  context_lens=[8, 32]))
    items = decode.items()
    assert [(i.workload.batch_size, i.workload.seq_len, i.workload.context_len)
            for i in items] == [
        (1, 1, 8), (1, 1, 32), (2, 1, 8), (2, 1, 32)]
    assert {(i.workload.phase, i.workload.optimizer) for i in items} == {("decode", None)}
    assert len({i.label() for i in items}) == 4  # labels name the item (failures, retries)
    train = load_plan(write_plan(tmp_path, models=["tiny/bert"], phase="train"))
    assert {(w.phase, w.optimizer, w.context_len) for w in workloads(train)} == {
        ("train", "adamw", 0)}
    assert train.items()[0].model_key != load_plan(write_plan(
        tmp_path, models=["tiny/bert"])).items()[0].model_key  # the LM head is another model


# -- order -------------------------------------------------------------------------------------

def test_every_model_gets_a_few_cells_before_any_full_grid(tmp_path):
    plan = load_plan(write_plan(tmp_path, grid={"batch_sizes": [1, 2, 4], "seq_lens": [4, 8, 16]},
                                dtypes=["bfloat16", "float32"]))
    order = priority_order(plan)
    rounds = [(i.workload.dtype, cell_round(i.workload.batch_size, i.workload.seq_len,
                                            [1, 2, 4], [4, 8, 16]), i.model) for i in order]
    assert rounds[:2] == [("bfloat16", 0, "tiny/bert"), ("bfloat16", 0, "tiny/gpt2")]
    assert [r[:2] for r in rounds[2:6]] == [("bfloat16", 1)] * 4
    first = order[0].workload
    assert (first.batch_size, first.seq_len) == (2, 8)  # the middle cell first
    first_f32 = next(k for k, r in enumerate(rounds) if r[0] == "float32")
    assert first_f32 == len(order) // 2  # the first dtype listed is finished first
    assert sorted(order, key=lambda i: i.label()) == sorted(plan.items(), key=lambda i: i.label())


# -- features for planning ----------------------------------------------------------------------

@pytest.mark.parametrize("model", ["tiny/bert", "tiny/roberta", "tiny/gpt2"])
def test_fake_tensor_features_match_a_real_trace(tmp_path, model):
    plan = load_plan(write_plan(tmp_path, models=[model], dtypes=["bfloat16"]))
    item = plan.items()[0]
    fake = FeaturePass().tree(item)
    w = item.workload
    built = build_model(item.source, dtype=w.dtype, hub=False)  # real weights, on the CPU
    real = trace_model(built, w.batch_size, w.seq_len, dtype=w.dtype,
                       timing=False, model_name=item.model, hub=False)

    def table(tree):
        return [(n.scope, n.type, n.instance_type, n.features["flops"],
                 n.features["mem_bytes"], n.features["num_parameters"], n.extra["calls"],
                 # the root's own calls include transformers' mask checks, which skip their
                 # data-dependent test on fake tensors (is_tracing): its signature may differ
                 n.extra["signature"] if n.level > 0 else None) for n in tree.nodes()]

    assert table(fake) == table(real)


# -- the measurement cache ----------------------------------------------------------------------

def _context(**kw) -> CacheContext:
    base = {"hardware": "cpu-x", "device_type": "cpu", "cpu_model": "Model Y",
            "meter": "simulated", "meter_domains": ("simulated",),
            "protocol": (("runs", 1), ("warmup", 0)), "versions": {"torch": "1"}}
    base.update(kw)
    return CacheContext(**base)


def test_cache_round_trip_and_context_checks(tmp_path):
    path = tmp_path / "trees.measurements.json"
    cache = CampaignCache(_context(), path)
    m = cache.get_or_measure("sig-a", lambda: Measurement(0.5, 0.4, 0.6, 3, 1, energy_j=2.0))
    cache.save()
    assert "pickle" not in path.read_text() and json.loads(path.read_text())["entries"]
    again = CampaignCache.open(path, _context(versions={"torch": "2"}))
    assert again.get_or_measure("sig-a", lambda: pytest.fail("re-measured")) == m
    assert again.notes and "torch 2 here, 1 in the file" in again.notes[0]
    for other in (_context(hardware="NVIDIA H100"), _context(protocol=(("runs", 5),)),
                  _context(meter="rapl"), _context(cpu_model="Model Z")):
        with pytest.raises(ValueError, match="another context"):
            CampaignCache.open(path, other)
    assert cache_path("a/b/trees.jsonl.gz") == Path("a/b/trees.measurements.json")


# -- running ------------------------------------------------------------------------------------

def test_tiny_plan_runs_then_measures_nothing_new(tmp_path):
    plan = load_plan(write_plan(tmp_path, models=["tiny/bert", "tiny/roberta"]))
    first = run_plan(plan, quiet())
    assert first.written == 4 and first.already == 0 and first.measured > 0
    trees = read_trees(plan.output)
    assert {(t.model_name, t.seq_len) for t in trees} == {
        ("tiny/bert", 4), ("tiny/bert", 8), ("tiny/roberta", 4), ("tiny/roberta", 8)}
    assert all(t.meta["meter"] == "simulated" for t in trees)
    assert all(n.ground_truth_energy is not None for t in trees for n in t.nodes())
    # measured once across models: fewer measurements than the trees' own distinct nodes
    separate = sum(len({n.extra["signature"] for n in t.nodes()}) for t in trees)
    assert first.measured == len(json.loads(cache_path(plan.output).read_text())["entries"])
    assert first.measured < separate
    assert first.summary_path.exists() and first.summary["trees"] == 4

    lines = plan.output.read_text()
    second = run_plan(plan, quiet())
    assert (second.written, second.already, second.measured) == (0, 4, 0)
    assert plan.output.read_text() == lines


def test_decode_plan_runs_resumes_and_its_dry_run_counts_the_measurements(tmp_path):
    plan = load_plan(write_plan(tmp_path, models=["tiny/gpt2", "tiny/distilgpt2"],
                                phase="decode", grid={"batch_sizes": [2], "seq_lens": [1]},
                                context_lens=[4, 16]))
    estimate = dry_run(plan, quiet())
    first = run_plan(plan, quiet())
    assert first.written == 4 and first.measured == estimate.campaign
    trees = read_trees(plan.output)
    assert {(t.model_name, t.key.phase, t.key.context_len, t.seq_len) for t in trees} == {
        (m, "decode", c, 1) for m in ("tiny/gpt2", "tiny/distilgpt2") for c in (4, 16)}
    assert all(n.ground_truth_energy is not None for t in trees for n in t.nodes())
    assert any(n.instance_type == "KVCacheUpdate" for n in trees[0].nodes())
    second = run_plan(plan, quiet())
    assert (second.written, second.already, second.measured) == (0, 4, 0)


def test_train_plan_makes_training_step_trees(tmp_path):
    plan = load_plan(write_plan(tmp_path, models=["tiny/bert", "tiny/gpt2"], phase="train",
                                optimizer="sgd", grid={"batch_sizes": [2], "seq_lens": [4]}))
    first = run_plan(plan, quiet())
    assert first.written == 2
    trees = read_trees(plan.output)
    assert {(t.model_name, t.key.phase, t.key.optimizer) for t in trees} == {
        ("tiny/bert", "train", "sgd"), ("tiny/gpt2", "train", "sgd")}
    for tree in trees:
        assert [c.scope for c in tree.root.children] == ["forward", "backward", "optimizer"]
        assert tree.root.ground_truth_energy > 0
    assert run_plan(plan, quiet()).measured == 0


def test_cache_from_another_context_is_refused_before_writing(tmp_path):
    plan = load_plan(write_plan(tmp_path, models=["tiny/gpt2"],
                                grid={"batch_sizes": [1], "seq_lens": [4]}))
    run_plan(plan, quiet())
    lines = plan.output.read_text()
    other = load_plan(write_plan(tmp_path, models=["tiny/gpt2"],
                                 grid={"batch_sizes": [1], "seq_lens": [4, 8]},
                                 protocol={**FAST, "runs": 2}))
    with pytest.raises(CampaignError, match="another context"):
        run_plan(other, quiet())
    assert plan.output.read_text() == lines


def _count_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


@pytest.mark.slow  # a real process killed mid-run, then 9 trees (resume: quick tests above)
def test_killed_run_resumes_on_a_copy_without_remeasuring(tmp_path):
    first_dir = tmp_path / "first"
    first_dir.mkdir()
    plan_path = write_plan(first_dir, models=["tiny/bert", "tiny/gpt2", "tiny/roberta"],
                           grid={"batch_sizes": [1, 2], "seq_lens": [4, 8]},
                           protocol={"warmup": 0, "runs": 1, "min_run_seconds": 0.01})
    output = first_dir / "out" / "trees.jsonl"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # the run kills itself (SIGKILL: no clean-up) right after its third tree is written
    script = (
        "import os, signal, sys\n"
        "from irene.campaign import RunOptions, load_plan, run_plan\n"
        "written = []\n"
        "def on_event(event):\n"
        "    if event['event'] == 'written':\n"
        "        written.append(event)\n"
        "        if len(written) == 3:\n"
        "            os.kill(os.getpid(), signal.SIGKILL)\n"
        "run_plan(load_plan(sys.argv[1]), RunOptions(progress=False, on_event=on_event))\n")
    proc = subprocess.run([sys.executable, "-c", script, str(plan_path)], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    made = _count_lines(output)
    assert made == 3, f"killed after {made} of 12 trees"

    fresh = tmp_path / "fresh"
    shutil.copytree(first_dir / "out", fresh / "out")
    copied = json.loads(cache_path(fresh / "out" / "trees.jsonl").read_text())
    before = fresh.joinpath("out", "trees.jsonl").read_text()
    plan = load_plan(plan_path, output=fresh / "out" / "trees.jsonl")
    result = run_plan(plan, quiet())
    assert result.already == made and result.written == 12 - made
    assert fresh.joinpath("out", "trees.jsonl").read_text().startswith(before)
    assert len({t.key for t in read_trees(plan.output)}) == 12
    saved = json.loads(cache_path(plan.output).read_text())
    new = set(saved["entries"]) - set(copied["entries"])
    assert result.measured == len(new)  # nothing in the copied cache was measured again
    assert all(saved["entries"][k] == v for k, v in copied["entries"].items())
    assert len(saved["sessions"]) == 2 and saved["sessions"][0]["seconds"] > 0


# -- dry run and budget ------------------------------------------------------------------------

def test_dry_run_counts_and_estimates_without_writing(tmp_path, capsys):
    path = write_plan(tmp_path, models=["tiny/bert", "tiny/roberta", "tiny/gpt2"])
    plan = load_plan(path)
    estimate = dry_run(plan, quiet())
    assert not (tmp_path / "out").exists()
    assert [row["model"] for row in estimate.per_model()] == ["tiny/bert", "tiny/roberta",
                                                              "tiny/gpt2"]
    assert estimate.campaign < estimate.separate  # roberta reuses bert's encoder
    roberta = estimate.per_model()[1]
    assert 0 < roberta["new"] < estimate.per_model()[0]["new"]
    assert estimate.total_s > 0 and all(e.take for e in estimate.items)
    assert main(["run", str(path), "--dry-run", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "tiny/roberta" in out and "node measurements:" in out and "expected wall time" in out


class WorkClock:
    """A fake clock for a run (``RunOptions.clock``): time passes only as work is done -- the
    run's start, then each tree's estimated seconds when it is written -- so what fits in a
    budget does not depend on how fast or busy this machine is."""

    def __init__(self, start_s: float, seconds: dict[str, float]) -> None:
        self.start_s, self.seconds = start_s, seconds
        self.now: float | None = None
        self.written: list[str] = []

    def __call__(self) -> float:
        if self.now is None:  # the run's first reading; its start has taken start_s after it
            self.now = self.start_s
            return 0.0
        return self.now

    def on_event(self, event: dict) -> None:
        if event["event"] == "written":
            self.written.append(event["item"])
            self.now += self.seconds[event["item"]]


def test_dry_run_counts_the_work_of_a_real_run(tmp_path):
    """The estimate is built on work counts that the real run then does: one tree per item
    with the nodes planned, and exactly the node measurements it counted (how close its
    seconds come to wall time is measured by benchmarks/campaign_bench.py)."""
    plan = load_plan(write_plan(tmp_path, models=["tiny/bert", "tiny/gpt2"],
                                protocol={"warmup": 1, "runs": 3, "min_run_seconds": 0.001}))
    estimate = dry_run(plan, quiet())
    result = run_plan(plan, quiet())
    assert result.written == len(estimate.items) == 4
    assert result.measured == estimate.campaign > 0
    assert estimate.campaign < estimate.separate  # shared measurements counted once
    planned = {(e.item.model, e.item.workload.batch_size, e.item.workload.seq_len): e.cost.nodes
               for e in estimate.items}
    made = {(t.model_name, t.batch_size, t.seq_len): len(list(t.nodes()))
            for t in read_trees(plan.output)}
    assert made == planned


def test_budget_orders_work_and_stops_cleanly_then_resumes(tmp_path):
    path = write_plan(tmp_path, models=["tiny/bert", "tiny/gpt2"],
                      grid={"batch_sizes": [1, 2], "seq_lens": [4, 8]},
                      protocol={"warmup": 0, "runs": 1, "min_run_seconds": 0.001},
                      estimate={"profile": "h100-sxm"})  # fixed rates: the same estimate here
    plan = load_plan(path)
    ample = dry_run(plan, RunOptions(progress=False, budget_minutes=1e3))  # costs as budgeted
    assert all(e.take for e in ample.items)
    seconds = [e.seconds for e in ample.items]
    budget_s = ample.profile.start_s + sum(seconds[:2]) + 0.5 * seconds[2]  # 2.5 trees' time
    assert 0.5 * seconds[2] < min(seconds[2:])  # so the third and the rest do not fit
    planned = dry_run(plan, RunOptions(progress=False, budget_minutes=budget_s / 60))
    fits = [e.item.label() for e in planned.items if e.take]
    assert fits == [e.item.label() for e in ample.items[:2]]
    clock = WorkClock(planned.profile.start_s, {e.item.label(): e.seconds
                                                for e in planned.items})
    result = run_plan(plan, RunOptions(progress=False, budget_minutes=budget_s / 60,
                                       clock=clock, on_event=clock.on_event))
    assert clock.written == fits  # what the dry run said fits, in its order
    assert result.seconds <= budget_s and len(result.deferred) == 8 - len(fits)
    made = {(t.model_name, t.batch_size, t.seq_len) for t in read_trees(plan.output)}
    assert {("tiny/bert", 1, 4), ("tiny/gpt2", 1, 4)} <= made  # both middles came first
    rest = run_plan(plan, quiet())
    assert rest.already == result.written and rest.written == 8 - result.written


def test_budgeted_run_takes_a_later_cheaper_item_as_its_dry_run_does(tmp_path):
    path = write_plan(tmp_path, models=["tiny/bert", "tiny/gpt2"],
                      grid={"batch_sizes": [1, 2], "seq_lens": [4, 8]},
                      protocol={"warmup": 0, "runs": 1, "min_run_seconds": 0.001},
                      estimate={"profile": "h100-sxm"})
    plan = load_plan(path)
    ample = dry_run(plan, RunOptions(progress=False, budget_minutes=1e3))
    seconds = [e.seconds for e in ample.items]
    later = min(range(3, len(seconds)), key=seconds.__getitem__)
    assert seconds[later] < seconds[2]  # the grid has a cheaper item after the third
    budget_s = ample.profile.start_s + sum(seconds[:2]) + 0.5 * (seconds[later] + seconds[2])
    planned = dry_run(plan, RunOptions(progress=False, budget_minutes=budget_s / 60))
    fits = [e.item.label() for e in planned.items if e.take]
    assert len(fits) > 2 and ample.items[2].item.label() not in fits
    clock = WorkClock(planned.profile.start_s, {e.item.label(): e.seconds
                                                for e in planned.items})
    run_plan(plan, RunOptions(progress=False, budget_minutes=budget_s / 60, clock=clock,
                              on_event=clock.on_event))
    assert clock.written == fits  # a cheaper item after a deferred one is still taken


def test_budget_too_small_for_one_tree_writes_nothing(tmp_path, capsys):
    path = write_plan(tmp_path)
    with pytest.raises(BudgetTooSmall, match="too small for one tree"):
        run_plan(load_plan(path), RunOptions(progress=False, budget_minutes=0.001))
    assert main(["run", str(path), "--budget-minutes", "0.001", "--no-progress"]) == 2
    assert "too small for one tree" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_output_of_another_kind_is_refused(tmp_path):
    path = write_plan(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "trees.jsonl").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not energy trees"):
        run_plan(load_plan(path), quiet())
    (out / "trees.jsonl").unlink()
    (out / "trees.measurements.json").write_text('{"something": "else"}')
    with pytest.raises(ValueError, match="is not this campaign's file"):
        run_plan(load_plan(path), quiet())


def test_gzip_output_and_features_only_plan(tmp_path):
    path = write_plan(tmp_path, output=str(tmp_path / "out" / "f.jsonl.gz"), timing=False,
                      meter="none", models=["tiny/gpt2"])
    result = run_plan(load_plan(path), quiet())
    assert result.written == 2 and result.measured == 0
    with gzip.open(tmp_path / "out" / "f.jsonl.gz", "rt") as handle:
        assert len(handle.read().splitlines()) == 2
    assert not cache_path(tmp_path / "out" / "f.jsonl.gz").exists()
    assert all(t.meta["meter"] == "none" for t in read_trees(tmp_path / "out" / "f.jsonl.gz"))


# -- summary and meter check -------------------------------------------------------------------

def _node(scope: str, energy: float, lo: float, hi: float, children=()) -> Node:
    features = {"num_parameters": 0.0, "flops": 0.0, "mem_bytes": 0.0, "times_mean": energy}
    for name in ("cpu", "mem", "gpu", "gpu_mem", "gpu_clk", "gpu_mem_clk", "gpu_energy_mean"):
        features[name] = 0.0
    kind = "ml" if not children else "module"
    return Node(id=scope, scope=scope, parent_name="", level=0, instance_type="X", type=kind,
                features=features, ground_truth_energy=energy, children=list(children),
                extra={"energy_p10": lo, "energy_p90": hi, "times_p10": lo, "times_p90": hi})


def test_summary_spread_and_children_over_parent():
    leaves = [_node("root.a", 1.0, 0.9, 1.1), _node("root.b", 3.0, 2.7, 3.3)]
    root = _node("root", 5.0, 4.0, 6.0, leaves)
    root.type = "model"
    tree = Tree("m", 1, 8, place_nodes(root))
    ratio = children_ratio([tree], "energy")
    assert ratio["0"]["median"] == pytest.approx(4.0 / 5.0)
    spread = spread_summary([tree], "energy")
    assert spread["by_type"]["model"]["median"] == pytest.approx(0.4)
    assert spread["by_type"]["ml"]["median"] == pytest.approx(0.2)
    assert spread["all"]["wide_share"] == pytest.approx(1.0)


def test_meter_check_reads_the_nvml_counter_period(monkeypatch):
    from support.fakes import FakeGpu, FakePynvml

    from irene.campaign.metercheck import check_meter
    from irene.measure.nvml import NvmlMeter

    class FakeTime:  # time passes only by sleeping (no wall-clock speed in the test)
        now = 1.001

        def clock(self) -> float:
            return self.now

        def sleep(self, seconds: float) -> None:
            self.now += seconds

    fake = FakeTime()

    class Ticking(FakePynvml):  # the energy counter moves by 2 J every 20 ms
        def nvmlDeviceGetTotalEnergyConsumption(self, h):
            return int(fake.now / 0.02) * 2000

    meter = NvmlMeter(pynvml=Ticking([FakeGpu("GPU-1")]), env={}, cuda_uuids=None, sync=None)
    meter.clock = fake.clock
    result = check_meter(meter, idle_seconds=0.1, poll_seconds=0.3, clock=fake.clock,
                         sleep=fake.sleep)
    assert result.energy_counter is True
    assert result.update_period_s == pytest.approx(0.02, abs=0.0005)  # one 0.5 ms poll step
    assert result.idle_power_w["gpu:0"] == pytest.approx(2000 / 0.02 / 1000)  # 5 ticks, 0.1 s
    assert any("meter: nvml" in line for line in result.lines())


def test_the_documented_example_plan_is_valid(tmp_path):
    text = (REPO / "docs" / "campaigns.md").read_text(encoding="utf-8")
    example = text.split("```yaml\n")[1].split("```")[0]
    shutil.copytree(TINY, tmp_path / "tiny")
    (tmp_path / "plan.yaml").write_text(example)
    plan = load_plan(tmp_path / "plan.yaml")
    assert {(w.dtype, w.batch_size, w.seq_len) for w in workloads(plan)
            if w.dtype == "bfloat16"} == {("bfloat16", 2, 16)}
