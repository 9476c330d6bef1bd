"""End to end on the loopback address: a real ``irene serve`` subprocess with a tiny random
GPT-2, ``irene load``'s client with the simulated meter, a misbehaving client, SIGTERM;
``irene serve-bench`` on two runtimes (the runtimes' cached decoding is checked against
cache-less decoding in test_serve_engines.py). Bounded in count and time (every wait has a
deadline); nothing listens beyond 127.0.0.1."""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from irene.cli import main  # noqa: E402
from irene.measure import SimulatedMeter  # noqa: E402
from irene.serve.bench import free_port  # noqa: E402
from irene.serve.load import run_load, write_run  # noqa: E402
from irene.serve.prompts import read_prompts  # noqa: E402

pytestmark = pytest.mark.slow
MAX_PROMPT_CHARS = 4000
STARTUP_S = 240


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    from transformers import GPT2Config

    directory = tmp_path_factory.mktemp("tiny-serve")
    GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=512, n_positions=1024,
               bos_token_id=None, eos_token_id=None).save_pretrained(directory)
    return directory


def _wait_healthy(url: str, proc: subprocess.Popen, deadline_s: float) -> dict:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}: "
                                 f"{proc.stderr.read().decode()[-2000:]}")
        try:
            return httpx.get(f"{url}/health", timeout=2).json()
        except httpx.HTTPError:
            time.sleep(0.3)
    raise AssertionError(f"server not healthy within {deadline_s} s")


@pytest.fixture(scope="module")
def server(tiny_dir):
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "irene", "serve", str(tiny_dir), "--port", str(port),
         "--max-new-tokens", "200", "--max-prompt-chars", str(MAX_PROMPT_CHARS),
         "--threads", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        health = _wait_healthy(url, proc, STARTUP_S)
        yield url, proc, health
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _poll(url: str, test, deadline_s: float = 60.0) -> dict:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        health = httpx.get(f"{url}/health", timeout=5).json()
        if test(health):
            return health
        time.sleep(0.05)
    raise AssertionError(f"/health never satisfied the condition: {health}")


def test_twenty_requests_at_concurrency_four_with_marks_and_energy(server, tmp_path):
    url, _, health = server
    assert health["runtime"] == "torch" and health["pid"] > 0
    prompts = read_prompts(limit=20)
    meter = SimulatedMeter(power_w=50.0)
    run = run_load(url, prompts, requests=20, concurrency=4, meter=meter, max_new_tokens=8,
                   period_s=0.05, timeout_s=120)
    records = run.records
    assert len(records) == 20 and all(r.ok for r in records), [r.error for r in records]
    for r in records:
        assert r.start_s < r.first_token_s <= r.end_s
        assert r.tokens_out == 8 and r.tokens_in > 0
        assert r.server_ttft_s is not None and 0 < r.server_ttft_s <= r.server_total_s
        assert r.server_total_s <= r.latency_s and r.energy_j > 0
    # at most 4 in flight, and they did overlap
    events = sorted([(r.start_s, 1) for r in records] + [(r.end_s, -1) for r in records],
                    key=lambda e: (e[0], e[1]))
    live = peak = 0
    for _, step in events:
        live += step
        peak = max(peak, live)
    assert 2 <= peak <= 4
    s = run.summary
    shares = sum(r.energy_j for r in records)
    assert shares + s["idle_j"] == pytest.approx(s["total_j"], rel=0.01)
    assert shares == pytest.approx(s["active_j"], rel=1e-9)
    assert s["total_j"] == pytest.approx(sum(iv.energy_j for iv in run.intervals))
    measured_span = run.intervals[-1].t1 - run.intervals[0].t0
    assert s["total_j"] == pytest.approx(50.0 * measured_span, rel=0.02)
    assert s["energy"] == "simulated, not measured" and s["ok"] == 20
    assert s["j_per_token"] == pytest.approx(shares / 160)
    assert 0 <= s["outside_server_p50_s"] <= s["latency_p50_s"]
    out = write_run(run, tmp_path / "run")
    with open(out / "requests.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 20 and all(float(row["energy_j"]) > 0 for row in rows)
    assert {row["energy"] for row in rows} == {"simulated, not measured"}
    with open(out / "intervals.csv") as handle:
        trace = list(csv.DictReader(handle))
    assert sum(float(row["energy_j"]) for row in trace) == pytest.approx(s["total_j"])
    lines = (out / "requests.jsonl").read_text().splitlines()
    assert [json.loads(line)["index"] for line in lines] == list(range(20))
    assert json.loads((out / "summary.json").read_text())["kind"] == "irene-load"


def _post(url: str, content: bytes) -> httpx.Response:
    return httpx.post(f"{url}/generate", content=content,
                      headers={"content-type": "application/json"}, timeout=30)


def test_server_survives_bad_requests_and_a_disconnect_then_stops_on_sigterm(server):
    url, proc, _ = server
    bad = {
        b'{"prompt": "def f(":': 400,  # malformed JSON
        b'{"prompt": "x", "temperature": 1}': 422,  # unknown field
        b'{"prompt": ""}': 422,  # empty prompt
        json.dumps({"prompt": "y" * (MAX_PROMPT_CHARS + 1)}).encode(): 413,  # too many chars
        json.dumps({"prompt": "def " * 1000}).encode(): 413,  # too many tokens
        json.dumps({"prompt": "z" * (2 << 20)}).encode(): 413,  # body too large
    }
    for body, status in bad.items():
        response = _post(url, body)
        assert response.status_code == status, response.text
        detail = response.json()["detail"]
        assert isinstance(detail, str) and detail and "\n" not in detail
    # a streaming client that leaves after its first token
    before = httpx.get(f"{url}/health", timeout=5).json()["dropped"]
    with httpx.stream("POST", f"{url}/generate", timeout=30,
                      json={"prompt": "def add(a, b):", "stream": True,
                            "max_new_tokens": 200}) as response:
        first = next(response.iter_lines())
        assert "token" in json.loads(first)
    _poll(url, lambda h: h["dropped"] >= before + 1 and h["in_flight"] == 0)
    # a raw client that sends a request and hangs up at once
    with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=5) as s:
        body = b'{"prompt": "def g():", "max_new_tokens": 200}'
        s.sendall(b"POST /generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    _poll(url, lambda h: h["dropped"] >= before + 2 and h["in_flight"] == 0)
    assert _post(url, b'{"prompt": "def ok():", "max_new_tokens": 3}').status_code == 200
    # SIGTERM while a request is in flight: it completes, then the server exits cleanly
    answers: list[httpx.Response] = []
    sender = threading.Thread(target=lambda: answers.append(_post(
        url, b'{"prompt": "def long():", "max_new_tokens": 150}')))
    sender.start()
    _poll(url, lambda h: h["in_flight"] == 1)
    proc.send_signal(signal.SIGTERM)
    sender.join(120)
    assert answers and answers[0].status_code == 200
    assert answers[0].json()["tokens_out"] == 150
    assert proc.wait(60) == 0
    assert "stopped" in proc.stderr.read().decode()


def test_missing_runtime_package_is_a_clear_error(tiny_dir, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino -> ImportError
    assert main(["serve", str(tiny_dir), "--runtime", "openvino", "--port",
                 str(free_port())]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "openvino is not installed" in err[0]
    assert "pip install -e '.[openvino]'" in err[0]


def test_serve_bench_two_runtimes_json_page_and_report(tiny_dir, tmp_path, capsys):
    rc = main(["serve-bench", str(tiny_dir), "--runtimes", "torch,torchscript",
               "--repeats", "2", "--limit-prompts", "3", "--max-new-tokens", "4",
               "--concurrency", "2", "--meter", "simulated", "--threads", "1", "--json",
               "--html", str(tmp_path / "sb.html"), "--figure", str(tmp_path / "sb.png")])
    out = capsys.readouterr().out
    assert rc == 0
    bench = json.loads(out)
    assert [r["runtime"] for r in bench["runtimes"]] == ["torch", "torchscript"]
    for row in bench["runtimes"]:
        assert row["ok"] and row["repeats"] == 2 and row["failed_requests"] == 0
        assert row["j_per_request"] > 0 and row["j_per_token"] > 0
        assert 0 < row["latency_p50_s"] <= row["latency_p95_s"]
    assert all(len(v["j_per_request"]) == 6 for v in bench["samples"].values())
    verdict = bench["stats"]["j_per_request"]
    assert verdict["kruskal"] is not None and len(verdict["pairs"]) == 1
    assert bench["energy"] == "simulated, not measured"
    page = (tmp_path / "sb.html").read_text()
    assert "Serving API" in page and "simulated, not measured" in page
    assert (tmp_path / "sb.png").read_bytes()[:4] == b"\x89PNG"
    (tmp_path / "sb.json").write_text(out)
    rc = main(["report", "synthetic-demo", "--serve-bench", str(tmp_path / "sb.json"),
               "-o", str(tmp_path / "report.html")])
    assert rc == 0 and "id=serve-bench" in (tmp_path / "report.html").read_text()
