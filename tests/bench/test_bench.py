"""``irene bench``: variants, fidelity, protocol, outputs and CLI, on tiny models (no download)."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import sys

import pytest
import torch
import transformers as T
from support.models import bert_config, gpt2_config

from irene.bench import VARIANTS, compare_logits, load_model, parse_variants, run_bench
from irene.bench import variants as variants_module
from irene.bench.report import (
    NO_METER_LINE,
    bench_section_html,
    build_bench_page,
    markdown_table,
    rows_text,
)
from irene.bench.run import make_bench_inputs, reference_logits
from irene.bench.variants import conv1d_to_linear, two_four_mask
from irene.cli import main
from irene.measure import Protocol, SimulatedMeter
from irene.report import SYNTHETIC_LABEL

FAST = Protocol(runs=2, warmup=1, min_run_seconds=0.0, threads=1)
#: every variant that is an optimisation and runs on a CPU (compile is tested on its own: slow)
CPU_VARIANTS = ["eager", "sdpa", "bf16", "fp16", "torchscript", "onnxruntime", "openvino",
                "int8-dynamic", "prune-l1-30", "prune-2:4", "random-init"]
#: largest KL (nats) each optimisation may show on the tiny model: exact engines ~1e-15
KL_LIMITS = {"eager": 0.0, "sdpa": 1e-9, "torchscript": 1e-9, "onnxruntime": 1e-9,
             "openvino": 1e-9, "bf16": 1e-4, "fp16": 1e-5, "int8-dynamic": 1e-3,
             "prune-l1-30": 1e-2}


def has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


@pytest.fixture(scope="module")
def tiny_gpt2_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tiny-gpt2")
    gpt2_config(n_embd=64, vocab_size=256, bos_token_id=0, eos_token_id=0).save_pretrained(
        directory)
    return directory


@pytest.fixture(scope="module")
def cpu_run(tiny_gpt2_dir):
    return run_bench(str(tiny_gpt2_dir), CPU_VARIANTS, batch_size=2, seq_len=16,
                     protocol=FAST)


def by_name(run):
    return {r.variant: r for r in run.results}


# -- fidelity ----------------------------------------------------------------------------------

def test_fidelity_of_identical_logits_is_perfect():
    logits = torch.randn(2, 3, 7)
    f = compare_logits(logits, logits.clone())
    assert (f.top1_agreement, f.max_abs_logit_diff, f.mean_abs_logit_diff, f.kl_divergence,
            f.positions) == (1.0, 0.0, 0.0, 0.0, 6)


def test_fidelity_numbers_match_hand_computation():
    reference = torch.tensor([[[0.0, math.log(3.0)], [1.0, 0.0]]])   # p = (1/4, 3/4), argmax 1,0
    variant = torch.tensor([[[0.0, 0.0], [1.0, 0.0]]])               # q = (1/2, 1/2), argmax 0,0
    f = compare_logits(reference, variant)
    assert f.top1_agreement == 0.5          # position 0 flips (ties resolve to index 0)
    assert f.max_abs_logit_diff == pytest.approx(math.log(3.0))
    assert f.mean_abs_logit_diff == pytest.approx(math.log(3.0) / 4)
    kl0 = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
    assert f.kl_divergence == pytest.approx(kl0 / 2)


def test_fidelity_refuses_mismatched_shapes():
    with pytest.raises(ValueError, match="shape"):
        compare_logits(torch.zeros(1, 4, 10), torch.zeros(1, 4, 9))


# -- recipes' building blocks --------------------------------------------------------------------

def test_two_four_mask_keeps_the_two_largest_of_every_four():
    weight = torch.tensor([[0.1, -0.9, 0.5, 0.2, 3.0, 2.0, -1.0, 0.0]])
    mask = two_four_mask(weight)
    assert mask.tolist() == [[False, True, True, False, True, True, False, False]]
    big = two_four_mask(torch.randn(16, 64))
    assert (big.reshape(16, 16, 4).sum(-1) == 2).all()


def test_conv1d_to_linear_keeps_the_function(tiny_gpt2_dir):
    model, _ = load_model(str(tiny_gpt2_dir))
    inputs = make_bench_inputs(model, 1, 8)
    before = reference_logits(model, inputs)
    assert conv1d_to_linear(model) == 2 * 4          # c_attn, c_proj, c_fc, mlp.c_proj per layer
    assert not any(type(m).__name__ == "Conv1D" for m in model.modules())
    torch.testing.assert_close(reference_logits(model, inputs), before, rtol=1e-5, atol=1e-6)


def test_parse_variants_puts_the_reference_first_and_names_unknown_ones():
    assert parse_variants("int8-dynamic,compile,int8-dynamic") == ["eager", "int8-dynamic",
                                                                    "compile"]
    with pytest.raises(ValueError, match="unknown variant.*tensorrt.*known: eager"):
        parse_variants("eager,tensorrt")


# -- the model ----------------------------------------------------------------------------------

def test_local_directory_with_weights_is_loaded_not_redrawn(tmp_path):
    config = gpt2_config(n_layer=1, n_head=2, vocab_size=64, n_positions=32, bos_token_id=50256,
                         eos_token_id=50256)
    torch.manual_seed(123)
    saved = T.GPT2LMHeadModel(config).eval()
    saved.save_pretrained(tmp_path / "real")
    config.save_pretrained(tmp_path / "config-only")
    model, weights = load_model(str(tmp_path / "real"))
    assert weights.startswith(f"weights from {tmp_path / 'real'}")
    inputs = make_bench_inputs(model, 1, 8)
    torch.testing.assert_close(reference_logits(model, inputs),
                               reference_logits(saved, {"input_ids": inputs["input_ids"]}))
    random_model, random_weights = load_model(str(tmp_path / "config-only"))
    assert random_weights.startswith("random weights")
    assert not torch.equal(reference_logits(random_model, inputs), reference_logits(model, inputs))


def test_encoder_models_get_their_masked_lm_head(tmp_path):
    bert_config(num_hidden_layers=1).save_pretrained(tmp_path)
    run = run_bench(str(tmp_path), ["eager", "torchscript"], batch_size=1, seq_len=8,
                    protocol=FAST)
    assert run.model_class == "BertForMaskedLM"
    assert [r.status for r in run.results] == ["ok", "ok"]
    assert run.results[1].kl_divergence < 1e-9


# -- the comparison on the CPU -------------------------------------------------------------------

def test_every_cpu_variant_runs_and_is_compared_with_the_reference(cpu_run):
    rows = by_name(cpu_run)
    assert list(rows) == CPU_VARIANTS
    runnable = [v for v in CPU_VARIANTS
                if v != "prune-2:4" and (v != "openvino" or has("openvino"))]
    for name in runnable:
        r = rows[name]
        assert r.status == "ok", (name, r.reason)
        assert r.latency_s > 0 and r.latency_p10_s <= r.latency_s <= r.latency_p90_s
        assert r.throughput_seq_s == pytest.approx(2 / r.latency_s)
        assert r.size_bytes > 0 and r.prep_time_s >= 0 and r.peak_mem_bytes is not None
        assert 0.0 <= r.top1_agreement <= 1.0 and r.kl_divergence >= 0
        assert r.energy_j is None                      # no meter: no energy, never a made-up one
    for name, limit in KL_LIMITS.items():
        if rows[name].ok:
            assert rows[name].kl_divergence <= limit, name
            assert rows[name].top1_agreement == 1.0, name
    assert rows["eager"].max_abs_logit_diff == 0.0
    assert rows["bf16"].max_abs_logit_diff > 0 and rows["bf16"].dtype == "bfloat16"


def test_what_the_recipes_do_shows_in_size_and_notes(cpu_run):
    rows = by_name(cpu_run)
    eager = rows["eager"].size_bytes
    assert rows["bf16"].size_bytes < 0.6 * eager and rows["fp16"].size_bytes < 0.6 * eager
    assert rows["int8-dynamic"].size_bytes < 0.7 * eager
    assert rows["prune-l1-30"].size_bytes == pytest.approx(eager, rel=0.01)  # dense file
    assert any("Conv1D layers converted" in n for n in rows["int8-dynamic"].notes)
    assert any("30.0% of their weights zero" in n for n in rows["prune-l1-30"].notes)


def test_a_broken_variant_is_caught_by_the_fidelity_numbers(cpu_run):
    rows = by_name(cpu_run)
    broken = rows["random-init"]
    worst = max(rows[v].kl_divergence for v in KL_LIMITS if rows[v].ok)
    worst_diff = max(rows[v].max_abs_logit_diff for v in KL_LIMITS if rows[v].ok)
    assert broken.ok
    assert broken.kl_divergence > 100 * worst
    assert broken.max_abs_logit_diff > 10 * worst_diff
    assert broken.top1_agreement < 1.0


def test_unavailable_variants_say_why(cpu_run):
    rows = by_name(cpu_run)
    assert rows["prune-2:4"].status == "unavailable"
    assert "CUDA" in rows["prune-2:4"].reason and rows["prune-2:4"].latency_s is None
    if not has("openvino"):
        assert rows["openvino"].status == "unavailable"
        assert "'.[openvino]'" in rows["openvino"].reason
    table = markdown_table(cpu_run)
    assert "unavailable: needs a CUDA device" in table
    assert NO_METER_LINE in table and "energy/inf" not in table


def test_missing_package_and_failing_recipe_become_rows(tiny_gpt2_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)     # import onnxruntime -> ImportError

    def explode(model, inputs, device):
        raise RuntimeError("kernel exploded\nsecond line")

    monkeypatch.setitem(VARIANTS, "sdpa", variants_module.Variant("sdpa", "boom", explode))
    run = run_bench(str(tiny_gpt2_dir), ["sdpa", "onnxruntime", "prune-l1-30"], batch_size=1,
                    seq_len=8, protocol=FAST)
    rows = by_name(run)
    assert rows["sdpa"].status == "failed"
    assert rows["sdpa"].reason == "RuntimeError: kernel exploded"
    assert rows["onnxruntime"].status == "unavailable"
    assert "onnxruntime is not installed (pip install -e '.[onnx]')" in rows["onnxruntime"].reason
    assert rows["prune-l1-30"].ok and rows["eager"].ok         # the run went on


@pytest.mark.slow  # torch.compile of even a one-layer model takes ~20 s on a CPU
def test_compile_runs_and_matches_the_reference(tmp_path):
    gpt2_config(n_layer=1, n_head=2, vocab_size=64, n_positions=32, bos_token_id=0,
                eos_token_id=0).save_pretrained(tmp_path)
    run = run_bench(str(tmp_path), ["compile"], batch_size=1, seq_len=8, protocol=FAST)
    compiled = by_name(run)["compile"]
    assert compiled.status == "ok", compiled.reason
    assert compiled.kl_divergence < 1e-9 and compiled.top1_agreement == 1.0
    assert compiled.prep_time_s > 0 and compiled.latency_s > 0


def test_energy_with_a_meter_and_its_label(tiny_gpt2_dir):
    run = run_bench(str(tiny_gpt2_dir), ["eager", "int8-dynamic"], batch_size=1, seq_len=8,
                    protocol=FAST, meter=SimulatedMeter(power_w=40.0))
    for r in run.results:
        # the meter times its window with its own clock: a hair longer than the calls
        assert r.energy_j == pytest.approx(40.0 * r.latency_s, rel=0.05)
        assert r.prep_energy_j is not None and r.prep_energy_j >= 0
    table = markdown_table(run)
    assert "energy/inf" in table and NO_METER_LINE not in table and SYNTHETIC_LABEL in table
    assert SYNTHETIC_LABEL in bench_section_html(run)


# -- outputs ------------------------------------------------------------------------------------

def test_rows_html_and_page(cpu_run):
    rows = [json.loads(line) for line in rows_text(cpu_run, ".jsonl").splitlines()]
    assert [r["variant"] for r in rows] == CPU_VARIANTS
    assert all(r["model"] == cpu_run.model and r["batch_size"] == 2 for r in rows)
    table = list(csv.DictReader(rows_text(cpu_run, ".csv").splitlines()))
    assert len(table) == len(CPU_VARIANTS) and table[0]["variant"] == "eager"
    section = bench_section_html(cpu_run)
    assert section.startswith("<section id=bench") and "needs a CUDA device" in section
    page = build_bench_page(cpu_run)
    assert "<style>" in page and "http://" not in page and "https://" not in page
    assert "src=" not in page and "<link rel=\"stylesheet\"" not in page


# -- CLI ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["--variants", "eager,tensorrt"], "unknown variant(s) tensorrt; known: eager, sdpa"),
    (["--batch-size", "0"], "--batch-size must be >= 1"),
    (["--seq-len", "1000"], "--seq-len 1000 exceeds the 64 positions"),
    (["--runs", "0"], "Protocol.runs must be >= 1"),
    (["-o", "rows.txt"], "rows are written as .jsonl or .csv"),
    (["--figure", "fig.jpg"], "figures are written as .png or .svg"),
    (["--meter", "nosuchmeter"], "unknown meter 'nosuchmeter'"),
    (["--threads", "0"], "Protocol.threads must be from 1 to 1024"),
])
def test_cli_bad_values_exit_2_with_one_line(tiny_gpt2_dir, tmp_path, capsys, args, message):
    out = tmp_path / "rows.jsonl"
    rc = main(["bench", str(tiny_gpt2_dir), "--seq-len", "8", "-o", str(out), *args])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and err.startswith("irene bench: error:")
    assert message in err
    assert not out.exists() and not list(tmp_path.iterdir())      # nothing written


def test_cli_refuses_to_replace_another_kind_of_file(tiny_gpt2_dir, tmp_path, capsys):
    rows = tmp_path / "rows.jsonl"
    rows.write_text("<!DOCTYPE html><html></html>")
    rc = main(["bench", str(tiny_gpt2_dir), "--seq-len", "8", "-o", str(rows)])
    assert rc == 2 and "holds an HTML page" in capsys.readouterr().err
    config = tiny_gpt2_dir / "config.json"
    before = config.read_text()
    assert main(["bench", str(tiny_gpt2_dir), "--seq-len", "8", "--html", str(config)]) == 2
    assert "is also an input of this command" in capsys.readouterr().err
    assert config.read_text() == before


def test_cli_unknown_model_exits_2(capsys):
    assert main(["bench", "no-such-model-anywhere"]) == 2
    assert "unknown model 'no-such-model-anywhere'" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_cli_cuda_without_gpu_exits_2(tiny_gpt2_dir, capsys):
    assert main(["bench", str(tiny_gpt2_dir), "--device", "cuda"]) == 2
    assert "torch sees no CUDA device" in capsys.readouterr().err


def test_cli_writes_json_rows_figure_and_page(tiny_gpt2_dir, tmp_path, capsys):
    rows, figure, page = tmp_path / "r.csv", tmp_path / "f.svg", tmp_path / "p.html"
    rc = main(["bench", str(tiny_gpt2_dir), "--variants", "int8-dynamic,prune-2:4",
               "--batch-size", "1", "--seq-len", "8", "--runs", "2", "--threads", "1",
               "--json", "-o", str(rows), "--figure", str(figure), "--html", str(page)])
    assert rc == 0
    data = json.loads(capsys.readouterr().out)        # stdout is the JSON alone
    assert [r["variant"] for r in data["results"]] == ["eager", "int8-dynamic", "prune-2:4"]
    assert data["protocol"]["runs"] == 2 and data["meter"] == "none"
    assert len(list(csv.DictReader(rows.read_text().splitlines()))) == 3
    assert figure.read_text().lstrip().startswith("<?xml")
    assert "int8-dynamic" in page.read_text()


def test_cli_default_runs_is_ten():
    from irene.cli import build_parser

    args = build_parser().parse_args(["bench", "gpt2"])
    assert args.runs == 10 and not hasattr(args, "dedup")


def test_a_saved_run_is_a_section_of_the_report(cpu_run, tmp_path, capsys):
    import json

    from support.trees import bert_like_tree

    from irene.bench.run import BenchRun
    from irene.tree import write_trees

    assert BenchRun.from_dict(json.loads(json.dumps(cpu_run.to_dict()))) == cpu_run
    (tmp_path / "run.json").write_text(json.dumps(cpu_run.to_dict()))
    write_trees([bert_like_tree()], tmp_path / "t.jsonl")
    assert main(["report", str(tmp_path / "t.jsonl"), "--bench", str(tmp_path / "run.json"),
                 "-o", str(tmp_path / "page.html")]) == 0
    page = (tmp_path / "page.html").read_text()
    assert "<section id=bench" in page and "int8-dynamic" in page
    (tmp_path / "bad.json").write_text('{"results": 3}')
    assert main(["report", str(tmp_path / "t.jsonl"), "--bench", str(tmp_path / "bad.json"),
                 "-o", str(tmp_path / "page2.html")]) == 2
    assert "bad.json: not an irene bench run" in capsys.readouterr().err
    assert not (tmp_path / "page2.html").exists()
