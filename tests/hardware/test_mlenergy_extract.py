"""scripts/build_mlenergy_extract.py on a tiny leaderboard tree the tests write themselves."""

from __future__ import annotations

import copy
import csv
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support.paths import ROOT

spec = importlib.util.spec_from_file_location("build_mlenergy_extract",
                                              ROOT / "scripts" / "build_mlenergy_extract.py")
extract = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = extract  # dataclasses resolve the module by name
spec.loader.exec_module(extract)


def configuration(gpu: str, gpus: int, seqs: int, ept: float, **over: Any) -> dict[str, Any]:
    throughput = 100.0 * seqs
    config = {
        "avg_batch_size": 0.95 * seqs, "avg_output_len": 300.0, "avg_power_watts": ept * throughput,
        "energy_per_request_joules": ept * 300.0, "energy_per_token_joules": ept,
        "gpu_model": gpu, "max_num_seqs": seqs, "median_itl_ms": 20.0, "num_gpus": gpus,
        "output_length_distribution": {"bins": [0.0, 200.0, 400.0, 600.0],
                                       "counts": [2, 6, 2]},
        "output_throughput_tokens_per_sec": throughput, "p90_itl_ms": 25.0, "p95_itl_ms": 27.0,
        "p99_itl_ms": 30.0,
        "parallelization": {"data_parallel": 1, "expert_parallel": 1, "notes": "",
                            "tensor_parallel": gpus},
    }
    config.update(over)
    return config


def model_file(model_id: str, task: str, configs: list[dict[str, Any]],
               architecture: str = "Dense Transformer", precision: str = "bfloat16") -> dict:
    return {"activated_params_billions": 8.0, "architecture": architecture,
            "configurations": configs, "model_id": model_id, "task": task,
            "total_params_billions": 8.0, "weight_precision": precision}


def write_tree(root: Path, files: dict[str, dict]) -> Path:
    data = root / "public" / "data"
    (data / "models").mkdir(parents=True, exist_ok=True)
    index = {"architectures": {"llm": ["chat"], "mllm": ["image-chat"]}, "models": {}}
    (data / "index.json").write_text(json.dumps(index))
    for name, payload in files.items():
        (data / "models" / name).write_text(json.dumps(payload))
    return root


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return write_tree(tmp_path / "lb", {
        "org__zeta__chat.json": model_file("org/zeta", "chat", [
            configuration("H100", 1, 64, 0.2), configuration("H100", 1, 8, 0.9),
            configuration("H100", 1, 8, 1.0), configuration("B200", 1, 8, 0.5)]),
        "org__alpha__chat.json": model_file("org/alpha", "chat", [
            configuration("H100", 2, 16, 2.0)], architecture="MoE", precision="fp8"),
        # not an LLM task: left out
        "org__alpha__image-chat.json": model_file("org/alpha", "image-chat", [
            configuration("H100", 1, 8, 9.0)]),
    })


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_rows_are_sorted_validated_and_derived(tree, tmp_path):
    out = tmp_path / "out" / "llm.csv"
    assert extract.main([str(tree), "-o", str(out)]) == 0
    rows = read_csv(out)
    fields = [f["name"] for f in extract.load_schema()["fields"]]
    assert list(rows[0]) == fields
    keys = [(r["model_id"], r["gpu_model"], r["max_num_seqs"], r["replicate"]) for r in rows]
    assert keys == [("org/alpha", "H100", "16", "0"), ("org/zeta", "B200", "8", "0"),
                    ("org/zeta", "H100", "8", "0"), ("org/zeta", "H100", "8", "1"),
                    ("org/zeta", "H100", "64", "0")]
    alpha = rows[0]
    assert (alpha["architecture"], alpha["precision"], alpha["is_stable"]) == ("moe", "fp8", "true")
    assert float(alpha["avg_power_per_gpu_w"]) == pytest.approx(2.0 * 1600 / 2)
    assert float(alpha["batch_utilization"]) == pytest.approx(0.95)
    assert int(alpha["num_requests"]) == 10
    assert float(alpha["output_len_p50"]) == pytest.approx(300.0)  # 5 of 10 inside [200, 400)
    assert float(alpha["output_len_p90"]) == pytest.approx(500.0)
    assert float(alpha["output_len_max"]) == 600.0
    # E[L^2] / (2 E[L]) with centres 100, 300, 500 weighted 2, 6, 2
    assert float(alpha["output_context_mean"]) == pytest.approx(
        (2 * 100**2 + 6 * 300**2 + 2 * 500**2) / (2 * 3000))
    provenance = json.loads(extract.provenance_path(out).read_text())
    assert provenance["rows"] == 5 and provenance["per_gpu"]["H100"] == {"rows": 4, "models": 2}
    assert provenance["source_commit"] is None  # not a git checkout


def test_output_is_deterministic_and_reads_a_git_directory(tree, tmp_path):
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    assert extract.main([str(tree), "-o", str(first)]) == 0
    git = ["git", "-C", str(tree), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "data"], check=True)
    bare = tmp_path / "bare.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(tree), str(bare)], check=True)
    assert extract.main([str(bare), "-o", str(second)]) == 0
    assert first.read_bytes() == second.read_bytes()
    commit = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True,
                            text=True).stdout.strip()
    assert json.loads(extract.provenance_path(second).read_text())["source_commit"] == commit


@pytest.mark.parametrize("breakage, message", [
    (lambda c: c.pop("energy_per_token_joules"),
     "configurations[0].energy_per_token_joules: missing"),
    (lambda c: c.update(num_gpus=0), "configurations[0].num_gpus: expected an integer >= 1"),
    (lambda c: c.update(gpu_model="A100"), "configurations[0].gpu_model: unknown value 'A100'"),
    (lambda c: c.update(avg_power_watts=1.0), "energy_per_token_joules: 0.5 disagrees"),
    (lambda c: c.update(avg_batch_size=2.0), "below the benchmark's stability threshold"),
    (lambda c: c["output_length_distribution"].update(counts=[1, 2]), "4 edges for 2 counts"),
    (lambda c: c["parallelization"].pop("tensor_parallel"),
     "parallelization.tensor_parallel: missing"),
])
def test_bad_input_names_file_and_field_and_writes_nothing(tmp_path, capsys, breakage, message):
    config = configuration("H100", 1, 8, 0.5)
    broken = copy.deepcopy(config)
    breakage(broken)
    root = write_tree(tmp_path / "lb", {
        "org__m__chat.json": model_file("org/m", "chat", [broken])})
    out = tmp_path / "llm.csv"
    assert extract.main([str(root), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "org__m__chat.json" in err and message in err
    assert not out.exists() and not extract.provenance_path(out).exists()


def test_unknown_precision_mismatched_name_and_missing_source(tmp_path, capsys):
    root = write_tree(tmp_path / "lb", {"org__m__chat.json": model_file(
        "org/m", "chat", [configuration("H100", 1, 8, 0.5)], precision="int3")})
    assert extract.main([str(root), "-o", str(tmp_path / "x.csv")]) == 2
    assert "weight_precision: unknown value 'int3'" in capsys.readouterr().err
    shutil.rmtree(root)
    root = write_tree(tmp_path / "lb", {"org__other__chat.json": model_file(
        "org/m", "chat", [configuration("H100", 1, 8, 0.5)])})
    assert extract.main([str(root), "-o", str(tmp_path / "x.csv")]) == 2
    assert "do not match the file name" in capsys.readouterr().err
    assert extract.main([str(tmp_path / "nowhere"), "-o", str(tmp_path / "x.csv")]) == 2
    assert "no such file or directory" in capsys.readouterr().err


def test_readme_documents_every_field():
    readme = (ROOT / "datasets" / "mlenergy-v3" / "README.md").read_text(encoding="utf-8")
    for field in extract.load_schema()["fields"]:
        assert f"| `{field['name']}` |" in readme, field["name"]
