"""Experiment tracking with MLflow (optional extra: ``pip install -e '.[mlflow]'``; off unless
``--mlflow`` is given).

One MLflow run per ``irene run``, in the experiment named after the plan, so campaigns on many
machines can be compared in one place:

* **parameters**: the plan's settings (models, dtypes, attention, device, meter, schema,
  phase, ``protocol.*``), the hardware and host, and the versions of python, torch,
  transformers and irene;
* **metrics** (step = trees written so far): ``trees_done``, ``energy_per_tree_j`` (the root's
  measured energy per call) or ``time_per_tree_s``, ``spread_median`` (median run-to-run
  spread (p90 - p10) / median over the tree's measured nodes); at the end ``trees_written``,
  ``measured``, ``reused``, ``minutes``;
* **artifacts**: the trees file, the measurement cache, the plan and the summary (JSON and
  text).

The URI: ``--mlflow`` alone uses ``MLFLOW_TRACKING_URI`` when set, else a file store
``mlruns/`` beside the output; ``--mlflow URI`` takes a server (``http://host:5000``), a
database (``sqlite:///mlflow.db``, with the full ``mlflow`` package) or a directory
(``file:/path`` or a plain path). A file store is allowed explicitly
(``MLFLOW_ALLOW_FILE_STORE=true``: recent MLflow refuses it otherwise). The store is checked
before anything is measured or written: a URI that cannot be written is an error at once.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from irene.campaign.plan import Plan


class TrackingError(RuntimeError):
    """The MLflow store cannot be used (not installed, not writable, not reachable)."""


def import_mlflow() -> Any:
    try:
        import mlflow
    except ImportError as exc:
        raise TrackingError("--mlflow needs MLflow: pip install -e '.[mlflow]' (or pip "
                            "install mlflow-skinny)") from exc
    return mlflow


def resolve_uri(uri: str, output: Path) -> str:
    """The tracking URI to use for ``--mlflow [URI]`` (``""``: the default)."""
    if uri:
        return uri
    return os.environ.get("MLFLOW_TRACKING_URI") or \
        (output.resolve().parent / "mlruns").as_uri()


def local_store(uri: str) -> Path | None:
    """The directory of a file-store URI (``file:`` or a plain path), else None."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "" or (len(parsed.scheme) == 1 and uri[1:3] in (":\\", ":/")):
        return Path(uri).expanduser().resolve()
    return None


def _check_directory(path: Path) -> None:
    """TrackingError unless ``path`` is (or can be made as) a writable directory; creates
    nothing that stays."""
    existing = path
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise TrackingError(f"MLflow store {path}: {existing} is not a directory")
    try:
        probe = tempfile.mkdtemp(prefix=".irene-mlflow-check.", dir=existing)
    except OSError as exc:
        raise TrackingError(f"MLflow store {path}: cannot write in {existing} "
                            f"({exc.strerror or exc})") from exc
    shutil.rmtree(probe, ignore_errors=True)


class Tracker:
    """Logs one campaign run to MLflow; does nothing when ``uri`` is None."""

    def __init__(self, uri: str | None, plan: Plan) -> None:
        self.plan = plan
        self.uri = None if uri is None else resolve_uri(uri, plan.output)
        self.client: Any = None
        self.run_id: str | None = None
        self._spreads: list[float] = []

    @property
    def enabled(self) -> bool:
        return self.uri is not None

    def check(self) -> None:
        """TrackingError unless the store can be written (before anything else happens)."""
        if self.uri is None:
            return
        import_mlflow()
        store = local_store(self.uri)
        if store is not None:
            _check_directory(store)
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            self.uri = store.as_uri()
            return
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        try:
            self._client().search_experiments(max_results=1)
        except Exception as exc:  # any failure of the store (network, auth, scheme) is fatal
            raise TrackingError(f"MLflow store {self.uri} cannot be used: "
                                f"{str(exc).strip().splitlines()[0][:300]}") from exc

    def _client(self) -> Any:
        if self.client is None:
            from mlflow.tracking import MlflowClient

            self.client = MlflowClient(tracking_uri=self.uri)
        return self.client

    def start(self, host: Any, items: int, already: int) -> None:
        """Open the run and log the plan's parameters, hardware and versions."""
        if self.uri is None:
            return
        from mlflow.entities import Param

        client = self._client()
        experiment = client.get_experiment_by_name(self.plan.name)
        experiment_id = experiment.experiment_id if experiment is not None else \
            client.create_experiment(self.plan.name)
        run = client.create_run(experiment_id, run_name=f"{self.plan.name}@{host.hostname}",
                                tags={"irene.plan": str(self.plan.path),
                                      "irene.output": str(self.plan.output)})
        self.run_id = run.info.run_id
        params = _flatten(self.plan.settings())
        params.update({"hardware": host.hardware, "host": host.hostname,
                       "meter": host.meter, "meter_domains": ",".join(host.meter_domains),
                       "cpu_model": host.cpu_model, "items_in_plan": items,
                       "items_already_done": already})
        params.update({f"version.{k}": v for k, v in host.versions.items()})
        client.log_batch(self.run_id, params=[Param(k, str(v)[:500])
                                              for k, v in sorted(params.items())])

    def tree_done(self, tree: Any, done: int) -> None:
        """Metrics of one finished tree (step = trees written so far)."""
        if self.run_id is None:
            return
        spreads = [s for s in (_relative_spread(n) for n in tree.nodes()) if s is not None]
        metrics = {"trees_done": float(done)}
        if tree.root.ground_truth_energy is not None:
            metrics["energy_per_tree_j"] = float(tree.root.ground_truth_energy)
        if tree.root.features.get("times_mean"):
            metrics["time_per_tree_s"] = float(tree.root.features["times_mean"])
        if spreads:
            metrics["spread_median"] = statistics.median(spreads)
            self._spreads.extend(spreads)
        self._safely(lambda: [self.client.log_metric(self.run_id, k, v, step=done)
                              for k, v in metrics.items()])

    def finish(self, result: Any, status: str, artifacts: list[Path]) -> None:
        """Final metrics, the artifacts (trees, cache, plan, summary), and the run's status."""
        if self.run_id is None:
            return
        from irene.campaign.summary import format_summary

        metrics = {"trees_written": result.written, "measured": result.measured,
                   "reused": result.reused, "minutes": result.seconds / 60.0,
                   "deferred": len(result.deferred), "failed": len(result.failed)}
        if self._spreads:
            metrics["spread_median_all"] = statistics.median(self._spreads)

        def log() -> None:
            for key, value in metrics.items():
                self.client.log_metric(self.run_id, key, float(value))
            for path in artifacts:
                self.client.log_artifact(self.run_id, str(path))
            if result.summary is not None:
                with tempfile.TemporaryDirectory() as tmp:
                    text = Path(tmp) / "summary.txt"
                    text.write_text(format_summary(result.summary) + "\n", encoding="utf-8")
                    self.client.log_artifact(self.run_id, str(text))
            self.client.set_terminated(self.run_id, status)

        self._safely(log)

    def _safely(self, action: Any) -> None:
        """Run a logging action; a failure mid-campaign is reported and tracking stops (the
        measurements go on)."""
        try:
            action()
        except Exception as exc:  # tracking must never lose a measurement
            print(f"warning: MLflow logging failed, tracking stops: {exc}", file=sys.stderr)
            with contextlib.suppress(Exception):
                self.client.set_terminated(self.run_id, "FAILED")
            self.run_id = None


def _relative_spread(node: Any) -> float | None:
    from irene.campaign.summary import node_spread

    spread = node_spread(node, "energy")
    return spread if spread is not None else node_spread(node, "time")


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, f"{name}."))
        elif isinstance(value, list):
            out[name] = ",".join(str(v) for v in value)
        else:
            out[name] = value
    return out
