"""The serving API's pieces without a server: energy attribution (hand-calculated), statistics,
the cpu-model meter, prompt files, the tokenizer and the command line's bad input."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import time

import pytest

from irene.cli import main
from irene.measure import MeterUnavailable, SimulatedMeter, open_meter
from irene.measure.cpumodel import ESTIMATED_LABEL, CpuModelMeter
from irene.serve.attribution import Interval, MeterTrace, attribute
from irene.serve.load import energy_label, percentile
from irene.serve.prompts import HUMANEVAL, PromptFileError, read_prompts
from irene.serve.stats import cliffs_delta, compare_groups, holm

# --------------------------------------------------------------------------------------------
# attribution: a synthetic power trace, calculated by hand

#: four 1-second intervals at 10, 20, 30 and 40 W (10, 20, 30, 40 J)
TRACE = [Interval(0.0, 1.0, 10.0), Interval(1.0, 2.0, 20.0), Interval(2.0, 3.0, 30.0),
         Interval(3.0, 4.0, 40.0)]
#: A active 0.5-2.5 s, B active 1.5-3.0 s
REQUESTS = [(0.5, 2.5), (1.5, 3.0)]


def test_attribution_matches_the_hand_calculation():
    # [0,1): only A, for 0.5 s of 1 s -> A 5 J, idle 5 J
    # [1,2): A 1.0 s, B 0.5 s, busy the whole second -> A 20*1/1.5, B 20*0.5/1.5
    # [2,3): A 0.5 s, B 1.0 s, busy the whole second -> A 30*0.5/1.5 = 10, B 20
    # [3,4): nobody -> idle 40 J
    split = attribute(TRACE, REQUESTS)
    a = 5 + 20 / 1.5 + 10
    b = 20 * 0.5 / 1.5 + 20
    assert split.per_request_j == pytest.approx([a, b], abs=1e-12)
    assert split.idle_j == pytest.approx(45.0, abs=1e-12)
    assert split.total_j == 100.0
    assert split.active_j + split.idle_j == pytest.approx(split.total_j, abs=1e-12)


def test_identical_requests_share_equally_and_order_does_not_matter():
    split = attribute([Interval(0.0, 2.0, 8.0)], [(0.0, 2.0), (0.0, 2.0)])
    assert split.per_request_j == [4.0, 4.0] and split.idle_j == 0.0
    forward = attribute(TRACE, REQUESTS).per_request_j
    backward = attribute(TRACE, REQUESTS[::-1]).per_request_j
    assert forward == pytest.approx(backward[::-1])


def test_attribution_refuses_time_running_backwards():
    with pytest.raises(ValueError, match="before it starts"):
        attribute(TRACE, [(2.0, 1.0)])
    with pytest.raises(ValueError, match="before it starts"):
        attribute([Interval(1.0, 0.5, 1.0)], [])


def test_meter_trace_intervals_are_back_to_back_and_sum_to_the_meter():
    meter = SimulatedMeter(power_w=100.0)
    trace = MeterTrace(meter, period_s=0.02)
    trace.start()
    time.sleep(0.15)
    intervals = trace.stop()
    assert len(intervals) >= 3
    for iv in intervals:  # 100 W x the interval's own length (the meter's clock is ours)
        assert iv.energy_j == pytest.approx(100.0 * (iv.t1 - iv.t0), rel=0.05, abs=1e-3)
    for before, after in zip(intervals, intervals[1:], strict=False):
        assert 0.0 <= after.t0 - before.t1 < 0.01


# --------------------------------------------------------------------------------------------
# statistics


def test_cliffs_delta_and_holm_by_hand():
    assert cliffs_delta([3, 4], [1, 2]) == 1.0
    assert cliffs_delta([1, 3], [2, 2]) == 0.0  # one greater, one less per y
    assert cliffs_delta([1], [1, 2]) == -0.5
    # Holm: sorted p 0.01, 0.02, 0.04 times 3, 2, 1 -> 0.03, 0.04, 0.04 (kept monotone)
    assert holm([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])
    assert holm([0.9, 0.8]) == [1.0, 1.0]


def test_compare_groups_finds_a_clear_difference_only():
    low, high = [1.0, 1.1, 1.2, 1.3, 1.4, 1.5], [5.0, 5.1, 5.2, 5.3, 5.4, 5.5]
    verdict = compare_groups({"a": low, "b": high, "c": [x + 0.05 for x in low],
                              "d": [2.0]})
    assert verdict["left_out"] == ["d"] and verdict["kruskal"]["p"] < 0.01
    pairs = {(p["a"], p["b"]): p for p in verdict["pairs"]}
    assert pairs[("a", "b")]["significant"] and pairs[("a", "b")]["cliffs_delta"] == -1.0
    assert not pairs[("a", "c")]["significant"]
    assert all(p["p_holm"] >= p["p"] for p in verdict["pairs"])


def test_percentile_interpolates():
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([5.0], 95) == 5.0 and percentile([], 50) is None


# --------------------------------------------------------------------------------------------
# the cpu-model meter


def test_cpu_model_energy_is_tdp_times_cpu_seconds_over_cpus(monkeypatch):
    readings = iter([10.0, 13.0])
    monkeypatch.setattr("irene.measure.cpumodel.process_cpu_seconds",
                        lambda process, children=True: next(readings))
    meter = CpuModelMeter(80.0, cpu_count=2)
    with meter.window() as w:
        pass
    assert w.result.energy_j == {"cpu:model": pytest.approx(80.0 * 3.0 / 2)}
    assert any(ESTIMATED_LABEL in note for note in w.result.notes)
    assert meter.estimated and energy_label(meter) == ESTIMATED_LABEL


def test_cpu_model_meters_real_work_of_this_process():
    meter = CpuModelMeter(50.0, cpu_count=1)
    with meter.window() as w:
        end = time.process_time() + 0.3
        while time.process_time() < end:
            pass
    assert 50.0 * 0.25 <= w.result.total_j <= 50.0 * 2.0


def test_cpu_model_spec_parsing_and_labels():
    meter = open_meter("cpu-model:65")
    assert isinstance(meter, CpuModelMeter) and meter.tdp_w == 65.0
    assert isinstance(open_meter("cpu-model"), CpuModelMeter)
    with pytest.raises(MeterUnavailable, match="number of watts"):
        open_meter("cpu-model:lots")
    with pytest.raises(MeterUnavailable, match="> 0 W"):
        open_meter("cpu-model:0")
    assert energy_label(SimulatedMeter()) == "simulated, not measured"
    assert energy_label(None) == "none"


# --------------------------------------------------------------------------------------------
# prompts and tokenizer


def test_humaneval_ships_its_164_prompts_and_notice():
    prompts = read_prompts(HUMANEVAL)
    assert len(prompts) == 164
    assert [p.id for p in prompts] == [f"HumanEval/{i}" for i in range(164)]
    assert prompts[0].text.startswith("from typing import List")
    assert all(p.text.strip() for p in prompts)
    assert len(read_prompts(HUMANEVAL, limit=5)) == 5
    from irene.serve.prompts import humaneval_path

    notice = (humaneval_path().parent / "HUMANEVAL_NOTICE.md").read_text()
    assert "MIT License" in notice and "arXiv:2107.03374" in notice


def test_user_prompt_files(tmp_path):
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text('{"prompt": "def a():", "id": "x"}\n\n{"prompt": "def b():"}\n')
    assert [(p.id, p.text) for p in read_prompts(jsonl)] == [("x", "def a():"),
                                                             ("p.jsonl:3", "def b():")]
    packed = tmp_path / "p.jsonl.gz"
    packed.write_bytes(gzip.compress(jsonl.read_bytes()))
    assert len(read_prompts(packed)) == 2
    text = tmp_path / "p.txt"
    text.write_text("def f():\\n    return 1\n\nprint(2)\n")
    assert [p.text for p in read_prompts(text)] == ["def f():\n    return 1", "print(2)"]


@pytest.mark.parametrize("content, message", [
    ('{"prompt": "ok"}\n{"prompt": 3}\n', "p.jsonl:2: prompt: must be a non-empty string, "
                                        "got int 3"),
    ('{"prompt": "ok"}\n\n{"id": 1}\n', r"p.jsonl:3: prompt: must be a non-empty string, "
                                        r"got nothing \(null\)"),
    ('{"prompt": "ok"}\n{oops\n', "p.jsonl:2: not JSON"),
    ('["prompt"]\n', "p.jsonl:1: expected a JSON object"),
    ("\n\n", "no prompt in the file"),
])
def test_bad_prompt_files_name_the_line_and_field(tmp_path, content, message):
    path = tmp_path / "p.jsonl"
    path.write_text(content)
    with pytest.raises(PromptFileError, match=message):
        read_prompts(path)


def test_trained_tokenizer_is_deterministic_and_bounded():
    from irene.serve.tokenizer import load_tokenizer

    first, source = load_tokenizer("gpt2", 600)
    second, _ = load_tokenizer("gpt2", 600)
    text = read_prompts(limit=1)[0].text
    ids = first.encode(text).ids
    assert ids == second.encode(text).ids and max(ids) < 600 == first.get_vocab_size()
    assert first.decode(ids) == text
    assert len(ids) < len(text) / 2  # merges learned: fewer tokens than characters
    assert "not downloaded" in source


# --------------------------------------------------------------------------------------------
# command line


def test_help_imports_no_torch_or_server_stack():
    code = ("import sys; from irene.cli import build_parser; build_parser(); "
            "print(sorted(m for m in ('torch', 'fastapi', 'uvicorn', 'httpx') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def _free_port() -> int:
    from irene.serve.bench import free_port

    return free_port()


@pytest.mark.parametrize("extra, message", [
    (["--prompts", "MISSING.jsonl"], "MISSING.jsonl"),
    (["--meter", "nonsense"], "--meter: "),
    (["--concurrency", "0"], "--concurrency"),
])
def test_load_bad_input_exits_2_with_one_line(tmp_path, capsys, extra, message):
    rc = _run_or_exit(["load", f"http://127.0.0.1:{_free_port()}", "-o",
                       str(tmp_path / "run"), *extra])
    last = capsys.readouterr().err.strip().splitlines()[-1]  # argparse prints usage first
    assert rc == 2 and message in last and "error" in last
    assert not (tmp_path / "run").exists()


def test_load_without_a_server_exits_2_and_writes_nothing(tmp_path, capsys):
    rc = main(["load", f"http://127.0.0.1:{_free_port()}", "-o", str(tmp_path / "run"),
               "--limit-prompts", "2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and "no server answers" in err[-1]
    assert not (tmp_path / "run").exists()


def test_load_refuses_a_directory_it_did_not_write(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("mine")
    rc = main(["load", "http://127.0.0.1:9", "-o", str(tmp_path)])
    assert rc == 2 and "not empty" in capsys.readouterr().err
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_serve_bench_unknown_runtime_exits_2(capsys):
    assert main(["serve-bench", "gpt2", "--runtimes", "torch,tensorrt"]) == 2
    assert "tensorrt" in capsys.readouterr().err


def _run_or_exit(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse's own errors
        return int(exc.code)


def test_report_refuses_a_file_that_is_not_a_serve_bench_run(tmp_path, capsys):
    bad = tmp_path / "run.json"
    bad.write_text(json.dumps({"kind": "something else"}))
    rc = main(["report", "synthetic-demo", "--serve-bench", str(bad), "-o",
               str(tmp_path / "r.html")])
    assert rc == 2 and 'field "kind"' in capsys.readouterr().err
    assert not (tmp_path / "r.html").exists()


@pytest.mark.parametrize("command", ["serve", "serve-bench"])
def test_cuda_without_a_gpu_exits_2_before_loading(command, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert main([command, "gpt2", "--device", "cuda"]) == 2
    assert "--device cuda" in capsys.readouterr().err


def test_serve_on_a_taken_port_exits_2_before_loading(capsys):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "gpt2", "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--port {port}: cannot listen there" in err[0]
