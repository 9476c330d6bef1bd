"""The HTML report in a real browser: headless Chromium driven over the DevTools protocol.

Skipped cleanly where ``/usr/bin/chromium`` (Debian's ``chromium`` package) or the
``websocket-client`` package is missing. Leaves a screenshot in ``test-artifacts/``.
"""

from __future__ import annotations

import base64
import itertools
import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from support.paths import ROOT
from support.trees import bert_like_tree

from irene.report.html import write_report

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--remote-debugging-port=0", "--remote-allow-origins=*"]

pytestmark = pytest.mark.browser


class DevTools:
    """A headless Chromium with one page, driven through the DevTools protocol (a websocket)."""

    def __init__(self, user_data_dir: Path, timeout: float = 30.0) -> None:
        import websocket  # websocket-client, in the dev extra

        self.process = subprocess.Popen(
            [str(CHROMIUM), *FLAGS, f"--user-data-dir={user_data_dir}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.events: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        try:
            port = self._wait_for_port(user_data_dir / "DevToolsActivePort", timeout)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
                targets = json.load(r)
            page = next(t for t in targets if t["type"] == "page")
            self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=timeout)
        except BaseException:
            self.close()
            raise

    def _wait_for_port(self, path: Path, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if path.exists() and path.read_text().strip():
                return int(path.read_text().split()[0])
            if self.process.poll() is not None:
                stderr = self.process.stderr
                err = stderr.read().decode(errors="replace") if stderr else ""
                raise RuntimeError(f"chromium exited ({self.process.returncode}): {err[-2000:]}")
            time.sleep(0.05)
        raise TimeoutError("chromium did not open its DevTools port")

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        """Call a protocol method and return its result; events seen meanwhile are kept."""
        call_id = next(self._ids)
        self.ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == call_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            if "method" in message:
                self.events.append(message)

    def wait_for_event(self, method: str, timeout: float = 15.0) -> dict[str, Any]:
        if any(e["method"] == method for e in self.events):
            return next(e for e in self.events if e["method"] == method)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = json.loads(self.ws.recv())
            if "method" in message:
                self.events.append(message)
                if message["method"] == method:
                    return message
        raise TimeoutError(f"no {method} event")

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def click(self, selector: str) -> None:
        """A real mouse click (press and release) at the centre of the element."""
        x, y = self._centre(selector)
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    def hover(self, selector: str) -> None:
        x, y = self._centre(selector)
        self.send("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)

    def _centre(self, selector: str) -> tuple[float, float]:
        box = self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " if (!e) return null; e.scrollIntoView({block: 'nearest'});"
            " const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2];"
            " })()")
        assert box is not None, f"no element matches {selector}"
        return box[0], box[1]

    def problems(self) -> list[str]:
        """Console errors, uncaught exceptions and browser log errors seen so far."""
        found = []
        for event in self.events:
            method, params = event["method"], event.get("params", {})
            if method == "Runtime.exceptionThrown":
                found.append(f"exception: {params['exceptionDetails']}")
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                found.append(f"console.{params['type']}: {params.get('args')}")
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                found.append(f"log: {params['entry'].get('text')} {params['entry'].get('url')}")
        return found

    def requested_urls(self) -> list[str]:
        return [e["params"]["request"]["url"] for e in self.events
                if e["method"] == "Network.requestWillBeSent"]

    def close(self) -> None:
        if getattr(self, "ws", None) is not None:
            self.ws.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stderr:
            self.process.stderr.close()


@pytest.fixture
def browser(tmp_path):
    if not CHROMIUM.exists():
        pytest.skip("headless Chromium not installed (apt-get install chromium)")
    pytest.importorskip("websocket", reason="websocket-client missing (pip install -e .[dev])")
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    devtools = DevTools(profile)
    try:
        for domain in ("Runtime", "Log", "Page", "Network"):
            devtools.send(f"{domain}.enable")
        devtools.send("Emulation.setDeviceMetricsOverride", width=1280, height=1000,
                      deviceScaleFactor=1, mobile=False)
        yield devtools
    finally:
        devtools.close()
        shutil.rmtree(profile, ignore_errors=True)


def _visible_labels(devtools: DevTools) -> list[str]:
    return devtools.evaluate(
        "Array.from(document.querySelectorAll('#tree .trow.node'))"
        ".filter(r => r.getBoundingClientRect().height > 0)"
        ".map(r => r.querySelector('.label').textContent)")


def test_report_renders_expands_and_logs_no_error(browser, tmp_path):
    trees = [bert_like_tree(layers=4), bert_like_tree(layers=4, seq_len=256, seed=1)]
    page = tmp_path / "report.html"
    write_report(trees, page, origin="bert_trees.jsonl")

    browser.send("Page.navigate", url=page.as_uri())
    browser.wait_for_event("Page.loadEventFired")
    assert browser.evaluate("document.body.dataset.ready") == "true"

    # the tree is drawn: the model and its modules down to depth 2 are in the rendered DOM
    labels = _visible_labels(browser)
    assert labels[0] == "bert-tiny-test"  # the root row is named after the model
    for name in ("embeddings", "encoder", "pooler", "layer.0", "layer.3", "word_embeddings"):
        assert name in labels, f"{name!r} not rendered; rendered: {labels}"
    assert "attention" not in labels  # depth 3 starts closed
    assert browser.evaluate("document.querySelector('#type-bars').textContent").count("%") >= 5

    # a real click on the ▸ of encoder layer 0 opens it
    row = '[data-scope="bert.encoder.layer.0"]'
    assert browser.evaluate(f"document.querySelector('{row}').getAttribute('aria-expanded')") \
        == "false"
    browser.click(f"{row} .toggle")
    assert browser.evaluate(f"document.querySelector('{row}').getAttribute('aria-expanded')") \
        == "true"
    labels = _visible_labels(browser)
    for name in ("attention", "intermediate", "output"):
        assert name in labels, f"{name!r} not shown after expanding layer.0: {labels}"
    browser.click('[data-scope="bert.encoder.layer.0.intermediate"] .toggle')
    assert "dense" in _visible_labels(browser)

    # hovering a row shows its features
    browser.hover('[data-scope="bert.encoder.layer.0.intermediate.dense"]')
    tooltip = browser.evaluate(
        "(() => { const t = document.getElementById('tooltip');"
        " return t.hidden ? null : t.textContent; })()")
    assert tooltip is not None and "bert.encoder.layer.0.intermediate.dense" in tooltip
    assert "parameters" in tooltip and "MFLOP" in tooltip

    ARTIFACTS.mkdir(exist_ok=True)
    browser.evaluate("window.scrollTo(0, 0)")
    browser.hover('[data-scope="bert.encoder.layer.0.intermediate.dense"] .label')
    shot = browser.send("Page.captureScreenshot", format="png")
    (ARTIFACTS / "report.png").write_bytes(base64.b64decode(shot["data"]))

    # the tree selector switches to the second tree
    browser.evaluate("(() => { const s = document.getElementById('tree-select'); s.value = '1';"
                     " s.dispatchEvent(new Event('change')); })()")
    assert "seq 256" in browser.evaluate("document.getElementById('tree-select')"
                                         ".selectedOptions[0].textContent")
    assert "layer.0" in _visible_labels(browser)

    browser.send("Input.dispatchMouseEvent", type="mouseMoved", x=1, y=1)  # tooltip away
    full = browser.send("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                        clip={"x": 0, "y": 0, "scale": 1, "width": 1280, "height": browser.evaluate(
                            "document.documentElement.scrollHeight")})
    (ARTIFACTS / "report-full.png").write_bytes(base64.b64decode(full["data"]))

    assert browser.problems() == []
    assert all(u.startswith(("file:", "data:")) for u in browser.requested_urls()), \
        browser.requested_urls()


def test_console_errors_are_caught(browser, tmp_path):
    """The check above can fail: a page that throws is reported."""
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><html><body><script>console.error('boom');"
                    "undefinedFunction();</script></body></html>")
    browser.send("Page.navigate", url=page.as_uri())
    browser.wait_for_event("Page.loadEventFired")
    problems = browser.problems()
    assert any("boom" in p for p in problems) and any("exception" in p for p in problems)
