"""The committed public extracts (ML.ENERGY v3, v2, v1), their rebuild scripts, the family
mapping and the family-out harness (benchmarks/hardware_families.py)."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from support.paths import ROOT

from irene.hardware.families import UnknownFamily, family, is_held_out
from irene.hardware.public_models import FactsError, load_facts

DATASETS = ROOT / "datasets"
EXTRACTS = {"v3": DATASETS / "mlenergy-v3" / "llm.csv",
            "v2": DATASETS / "mlenergy-v2" / "llm.csv",
            "v1": DATASETS / "mlenergy-v1" / "eager.csv"}
V2_SCRIPT = ROOT / "scripts" / "build_mlenergy_v2_extract.py"
V1_SCRIPT = ROOT / "scripts" / "build_mlenergy_v1_extract.py"

spec = importlib.util.spec_from_file_location("hardware_families",
                                              ROOT / "benchmarks" / "hardware_families.py")
hf = importlib.util.module_from_spec(spec)
sys.modules["hardware_families"] = hf
spec.loader.exec_module(hf)


def read(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def run(script: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True,
                          cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


# --------------------------------------------------------------------------- committed extracts

@pytest.mark.parametrize("name", sorted(EXTRACTS))
def test_extract_matches_its_schema_and_provenance(name: str) -> None:
    path = EXTRACTS[name]
    schema = json.loads((path.parent / "schema.json").read_text())
    header, rows = read(path)
    assert header == [f["name"] for f in schema["fields"]]
    for field in schema["fields"]:
        assert field["unit"] is not None and field["source"] and field["description"]
        parse = {"int": int, "float": float, "str": str,
                 "bool": lambda v: {"true": True, "false": False}[v]}[field["type"]]
        for row in rows:
            value = parse(row[field["name"]])
            if field["type"] in ("int", "float"):
                assert math.isfinite(value), (field["name"], row)
    keys = [tuple(r[k] for k in schema["key"]) for r in rows]
    assert len(set(keys)) == len(keys)
    provenance = json.loads(path.with_name(path.stem + ".provenance.json").read_text())
    assert provenance["rows"] == len(rows)
    assert sum(g["rows"] for g in provenance["per_gpu"].values()) == len(rows)
    assert len(provenance["source_commit"]) == 40
    assert all(float(r["energy_per_token_j"]) > 0 for r in rows)


def test_extract_row_counts() -> None:
    counts = {name: len(read(path)[1]) for name, path in EXTRACTS.items()}
    assert counts == {"v3": 565, "v2": 241, "v1": 160}


def test_no_held_out_family_or_gpu_in_any_extract() -> None:
    _, v2 = read(EXTRACTS["v2"])
    _, v1 = read(EXTRACTS["v1"])
    _, v3 = read(EXTRACTS["v3"])
    for row in v2 + v1 + v3:
        low = row["model_id"].lower()
        assert "gemma-2" not in low and "phi-3" not in low, row["model_id"]
        assert not is_held_out(row["model_id"])
    assert {r["gpu_model"] for r in v1} == {"A100", "A40"}
    assert not any("V100" in value for r in v1 for value in r.values())
    assert {r["gpu_model"] for r in v2} == {"H100", "A100-40GB"}
    held = json.loads((DATASETS / "mlenergy-v2" / "llm.provenance.json").read_text())
    assert len(held["held_out_not_read"]) == 12
    assert not any(is_held_out(f.split("/")[-3] + "/" + f.split("/")[-2])
                   for f in held["source_files"])
    held1 = json.loads((DATASETS / "mlenergy-v1" / "eager.provenance.json").read_text())
    assert all("V100" in f for f in held1["held_out_not_read"])
    assert not any("V100" in f for f in held1["source_files"])


def test_v2_power_never_above_the_power_limit() -> None:
    _, rows = read(EXTRACTS["v2"])
    for row in rows:
        assert 0 < float(row["avg_power_per_gpu_w"]) <= float(row["power_limit_w"])
        assert int(row["num_gpus"]) == int(row["tensor_parallel"]) * int(row["pipeline_parallel"])


def test_family_column_is_the_one_mapping_and_every_model_has_one() -> None:
    for name, path in EXTRACTS.items():
        _, rows = read(path)
        for row in rows:
            fam = family(row["model_id"])
            if "family" in row:
                assert row["family"] == fam, (name, row["model_id"])
    assert family("Qwen/Qwen3-Coder-480B-A35B-Instruct-FP8") == "Qwen"
    assert family("mistralai/Mixtral-8x7B-Instruct-v0.1") == family("mistralai/Mistral-7B-v0.3")
    assert family("lmsys/vicuna-7B") == family("meta-llama/Llama-3.1-8B-Instruct") == "Llama"
    with pytest.raises(UnknownFamily):
        family("someone/unknown-model")


def test_architecture_facts_match_published_sizes() -> None:
    facts = load_facts()
    for fact in facts.values():
        assert abs(fact.total_params() / 1e9 / fact.nominal_params_b - 1) < 0.06, fact.model_id
        assert 0 < fact.active_params() <= fact.total_params()
    mixtral = facts["mistralai/Mixtral-8x7B-Instruct-v0.1"]
    assert mixtral.active_params() / 1e9 == pytest.approx(12.9, abs=0.1)
    assert facts["bigcode/starcoder2-15b"].total_params() / 1e9 == pytest.approx(16.0, abs=0.1)


def test_architecture_table_refuses_a_bad_row(tmp_path: Path) -> None:
    header = (DATASETS / "architectures" / "architectures.csv").read_text().splitlines()[0]
    bad = tmp_path / "facts.csv"
    bad.write_text(header + "\nx/y,decoder,two,0,8,1,1,8,16,gated,10,false,1,1,1,src\n")
    with pytest.raises(FactsError, match=r"facts.csv:2: layers"):
        load_facts(bad)


# --------------------------------------------------------------------------- rebuild scripts

def v2_json(model: str, gpu: str = "NVIDIA H100 80GB HBM3", **over: object) -> str:
    payload = {"Model": model, "GPU": gpu, "TP": 1, "PP": 1, "Energy/req (J)": 100.0,
               "Avg TPOT (s)": 0.03, "Token tput (tok/s)": 1000.0, "Avg Output Tokens": 400.0,
               "Avg BS (reqs)": 60.0, "Max BS (reqs)": 64}
    payload.update(over)
    return json.dumps(payload)


def v2_tree(root: Path, **over: object) -> Path:
    base = root / "data" / "llm_text_generation" / "chat" / "H100 80GB HBM3"
    good = base / "meta-llama" / "Meta-Llama-3.1-8B-Instruct" / "bs64+tp1+pp1.json"
    good.parent.mkdir(parents=True)
    good.write_text(v2_json("meta-llama/Meta-Llama-3.1-8B-Instruct", **over))
    # held-out directories hold files that would fail if they were ever opened
    for model in ("google/gemma-2-9b-it", "microsoft/Phi-3-mini-4k-instruct"):
        bad = base / model / "bs64+tp1+pp1.json"
        bad.parent.mkdir(parents=True)
        bad.write_text("{ not json")
    return root


def test_v2_script_builds_and_never_opens_held_out_files(tmp_path: Path) -> None:
    tree = v2_tree(tmp_path / "lb")
    out = tmp_path / "out" / "llm.csv"
    out.parent.mkdir()
    done = run(V2_SCRIPT, str(tree), "-o", str(out))
    assert done.returncode == 0, done.stderr
    _, rows = read(out)
    assert len(rows) == 1
    row = rows[0]
    assert row["family"] == "Llama" and row["gpu_model"] == "H100"
    assert float(row["energy_per_token_j"]) == pytest.approx(100.0 / 400.0)
    assert float(row["avg_power_w"]) == pytest.approx(250.0)
    meta = json.loads(out.with_name("llm.provenance.json").read_text())
    assert len(meta["held_out_not_read"]) == 2


@pytest.mark.parametrize("over, field", [({"Avg Output Tokens": -3}, "Avg Output Tokens"),
                                         ({"GPU": "NVIDIA A100-SXM4-40GB"}, ".GPU"),
                                         ({"TP": 2}, ".TP"),
                                         ({"Model": "google/gemma-2-9b-it"}, ".Model")])
def test_v2_script_refuses_bad_input_with_one_line(tmp_path: Path, over: dict, field: str) \
        -> None:
    tree = v2_tree(tmp_path / "lb", **over)
    out = tmp_path / "llm.csv"
    done = run(V2_SCRIPT, str(tree), "-o", str(out))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "bs64+tp1+pp1.json" in lines[0] and field in lines[0]
    assert not out.exists() and not out.with_name("llm.provenance.json").exists()


V1_HEADER = "model,throughput,response_length,latency,energy\n"


def v1_tree(root: Path, energy: str = "2000.0") -> Path:
    data = root / "data"
    data.mkdir(parents=True)
    (data / "A100_chat_benchmark.csv").write_text(
        V1_HEADER + f"lmsys/vicuna-7B,25.0,250.0,10.0,{energy}\n")
    (data / "A40_chat_benchmark.csv").write_text(V1_HEADER + "metaai/llama-7B,20.0,200.0,10.0,"
                                                 "2400.0\n")
    (data / "V100_chat_benchmark.csv").write_text("garbage that would fail if read\n\x00")
    return root


def test_v1_script_builds_and_never_opens_v100_files(tmp_path: Path) -> None:
    out = tmp_path / "eager.csv"
    done = run(V1_SCRIPT, str(v1_tree(tmp_path / "lb")), "-o", str(out))
    assert done.returncode == 0, done.stderr
    _, rows = read(out)
    assert [(r["model_id"], r["gpu_model"]) for r in rows] == [("lmsys/vicuna-7B", "A100"),
                                                               ("metaai/llama-7B", "A40")]
    assert float(rows[0]["energy_per_token_j"]) == pytest.approx(8.0)
    assert float(rows[0]["avg_power_w"]) == pytest.approx(200.0)
    meta = json.loads(out.with_name("eager.provenance.json").read_text())
    assert meta["held_out_not_read"] == ["data/V100_chat_benchmark.csv"]


def test_v1_script_refuses_bad_input_with_one_line(tmp_path: Path) -> None:
    out = tmp_path / "eager.csv"
    out.write_text("keep me")
    done = run(V1_SCRIPT, str(v1_tree(tmp_path / "lb", energy="lots")), "-o", str(out))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "A100_chat_benchmark.csv:2" in lines[0] and "energy" in lines[0]
    assert out.read_text() == "keep me"
    missing = run(V1_SCRIPT, str(tmp_path / "nowhere"), "-o", str(tmp_path / "x.csv"))
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1


# --------------------------------------------------------------------------- folds and baselines

def synthetic_rows() -> list:
    rng = np.random.default_rng(0)
    rows = []
    for k, (fam, gpu) in enumerate([(f, g) for f in ("A", "B", "C")
                                        for g in ("H100", "A100", "B200")]):
        for j in range(6):
            active = float(rng.uniform(1, 100))
            batch = float(2 ** rng.integers(0, 8))
            bw = hf.DATA_SHEETS[gpu].bandwidth
            energy = 3.0 * active ** 0.8 * batch ** -0.5 * (bw / 1e12) ** -0.3
            rows.append(hf.Row("v2", f"{fam}/m{k}-{j}", fam, gpu, "dense", 1, batch, active,
                               active, 100.0, 2e9 * active, 2e9 * active * batch, False, energy))
    return rows


def test_folds_hold_out_whole_families() -> None:
    rows = synthetic_rows()
    folds = hf.family_folds(rows)
    assert [f for f, _, _ in folds] == ["A", "B", "C"]
    for fam, train, test in folds:
        assert {rows[i].family for i in test} == {fam}
        assert fam not in {rows[i].family for i in train}
        assert sorted(train + test) == list(range(len(rows)))
    for fam, train, test in hf.gpu_family_folds(rows, "A100"):
        assert {(rows[i].family, rows[i].gpu) for i in test} == {(fam, "A100")}
        assert not any(rows[i].family == fam or rows[i].gpu == "A100" for i in train)

    seen: list[set[str]] = []

    def spy(train: list) -> object:
        seen.append({r.family for r in train})
        return lambda test: np.ones(len(test))

    pred = hf.predict_folds(spy, rows, folds)
    assert seen == [{"B", "C"}, {"A", "C"}, {"A", "B"}] and len(pred) == len(rows)


def test_real_folds_never_split_a_family() -> None:
    rows = hf.load_all(None, EXTRACTS["v2"], EXTRACTS["v1"])
    for fam, train, test in hf.family_folds(rows):
        assert {rows[i].family for i in test} == {fam}
        assert all(rows[i].family != fam for i in train)
    models = {}
    for r in rows:
        assert models.setdefault(r.model_id, r.family) == r.family


def test_loglinear_recovers_a_power_law_on_held_out_families_and_gpus() -> None:
    rows = synthetic_rows()
    errors = hf.evaluate(hf.fit_loglinear, rows)
    for cell in ("v2 H100", "v2 A100", "GPU left out: A100"):
        assert errors[cell].size and float(np.max(errors[cell])) < 1e-6, cell


def test_ecologits_published_formula_in_joules() -> None:
    row = hf.Row("v3", "x/y", "Llama", "H100", "dense", 2, 64.0, 70.0, 70.0, 500.0, 1.0, 1.0,
                 False, 1.0)
    # (1.1665e-6 * exp(-0.0112059 * 64) * 70 + 4.0529e-5) Wh per GPU = 0.28940 J, times 2 GPUs
    assert hf.fit_ecologits([])([row])[0] == pytest.approx(2 * 0.28940, rel=1e-3)


def test_roofline_baseline_is_the_data_sheet_bound() -> None:
    row = hf.Row("v2", "x/y", "Llama", "A40", "dense", 1, 1.0, 7.0, 7.0, 100.0, 14e9, 14e9,
                 False, 1.0)
    seconds = hf.roofline_seconds(row)
    assert seconds == pytest.approx(14e9 / 0.696e12)
    assert hf.fit_roofline_tdp([])([row])[0] == pytest.approx(300.0 * seconds)


def test_bar_is_the_best_of_each_metric() -> None:
    results = {"a": {"c": np.array([1.0, 2.0, 30.0])}, "b": {"c": np.array([5.0, 5.0, 5.0])}}
    assert hf.bar(results, "c") == "2.0/5.0"
