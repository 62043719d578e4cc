"""Experiment tracking on MLflow (light; MLflow is the optional extra ``dltrain[mlflow]``, imported inside).

The run directory stays the source of truth: tracking is a copy. ``RUN/tracking.json`` remembers the MLflow
run (its id and tracking URI) so ``fit --resume`` and ``evaluate`` add to the same MLflow run. Every call is
bounded: MLflow's HTTP retries are turned off and its request timeout set to ``tracking.timeout`` (5 s), and
the first failure warns once and turns tracking off for the rest of the process, so a tracking server that is
down costs training at most a few seconds, never the run.

Default store: ``sqlite:///<runs folder>/mlflow.db`` (MLflow 3 wants a database rather than its plain file
store), with artefacts in ``<runs folder>/mlartifacts``. Browse with ``mlflow ui --backend-store-uri
sqlite:///runs/mlflow.db``.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any

from dltrain.config import TrackingConfig
from dltrain.errors import ConfigError
from dltrain.fsutil import atomic_write_json

log = logging.getLogger(__name__)

STATE_FILE = "tracking.json"


def require_mlflow() -> None:
    """Exit 2 naming the extra when MLflow is missing (checked before any run directory is made)."""
    try:
        import mlflow.tracking  # noqa: F401
    except ImportError:
        raise ConfigError(
            "tracking: kind mlflow needs MLflow, which is not installed: pip install 'dltrain[mlflow]' "
            "(or remove the tracking: section)."
        ) from None


def default_uri(run_dir: Path) -> str:
    return f"sqlite:///{run_dir.resolve().parent / 'mlflow.db'}"


def flatten(node: Any, prefix: str = "") -> dict[str, str]:
    if isinstance(node, dict):
        out: dict[str, str] = {}
        for key, value in node.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): json.dumps(node) if isinstance(node, list) else str(node)}


class Tracker:
    """One dltrain run's MLflow run. Every method warns instead of raising; after a failure it does nothing."""

    def __init__(self, spec: TrackingConfig, run_dir: Path, experiment: str) -> None:
        self.spec = spec
        self.run_dir = run_dir
        self.uri = spec.uri or default_uri(run_dir)
        self.experiment = spec.experiment or experiment
        self.client: Any = None
        self.run_id: str | None = None
        self.off = False

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if self.off:
            return None
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # any tracking failure: warn once, train on
            self.off = True
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            log.warning(
                "tracking (MLflow at %s) failed while %s: %s; tracking is off for this run",
                self.uri,
                what,
                first,
            )
            return None

    def start(self, params: dict[str, Any] | None, resume: bool) -> None:
        self._call("starting", self._start, params, resume)

    def _start(self, params: dict[str, Any] | None, resume: bool) -> None:
        # Bounded: no retries with exponential back-off (minutes by default), and a short request timeout.
        os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
        os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(max(1, int(math.ceil(self.spec.timeout))))
        logging.getLogger("mlflow").setLevel(logging.WARNING)
        logging.getLogger("alembic").setLevel(logging.WARNING)
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=self.uri)
        state = _read_state(self.run_dir)
        if resume and state and state.get("uri") == self.uri:
            self.run_id = state["run_id"]
            self.client.update_run(self.run_id, status="RUNNING")
            return
        found = self.client.get_experiment_by_name(self.experiment)
        if found is not None:
            experiment_id = found.experiment_id
        else:
            location = None
            if self.uri.startswith("sqlite:///"):
                location = (Path(self.uri[len("sqlite:///") :]).parent / "mlartifacts").resolve().as_uri()
            experiment_id = self.client.create_experiment(self.experiment, artifact_location=location)
        run = self.client.create_run(
            experiment_id, run_name=self.run_dir.name, tags={"dltrain.run_dir": str(self.run_dir.resolve())}
        )
        self.run_id = run.info.run_id
        atomic_write_json(
            self.run_dir / STATE_FILE, {"uri": self.uri, "run_id": self.run_id, "experiment": self.experiment}
        )
        if params:
            from mlflow.entities import Param

            items = [Param(k, v[:6000]) for k, v in flatten(params).items()]
            for i in range(0, len(items), 100):
                self.client.log_batch(self.run_id, params=items[i : i + 100])

    def metrics(self, values: dict[str, Any], step: int) -> None:
        if self.run_id is None:
            return
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = []
        for key, value in values.items():
            try:
                number = float(value)
            except (TypeError, ValueError):
                continue
            if key != "epoch" and math.isfinite(number):
                batch.append(Metric(key, number, now, step))
        if batch:
            self._call("logging metrics", self.client.log_batch, self.run_id, metrics=batch)

    def artifacts(self, paths: list[Path]) -> None:
        if self.run_id is None or not self.spec.artifacts:
            return
        for path in paths:
            if path.is_file():
                self._call(f"uploading {path.name}", self.client.log_artifact, self.run_id, str(path))
            elif path.is_dir():
                self._call(
                    f"uploading {path.name}/", self.client.log_artifacts, self.run_id, str(path), path.name
                )

    def finish(self, status: str) -> None:
        if self.run_id is not None:
            self._call("ending the run", self.client.set_terminated, self.run_id, status)


def _read_state(run_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((run_dir / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("run_id"), str) else None


def log_eval(run_dir: Path, spec: TrackingConfig | None, split: str, summary: dict[str, Any]) -> None:
    """``dltrain evaluate``: the eval metrics (``test_accuracy``, ...) into the run's MLflow run, if tracked."""
    state = _read_state(run_dir)
    if spec is None or state is None:
        return
    tracker = Tracker(spec.model_copy(update={"uri": state["uri"]}), run_dir, state.get("experiment") or "")
    tracker.start(None, resume=True)
    if tracker.run_id is None:
        return
    numbers = {
        f"{split}_{k}": v
        for k, v in summary.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }
    tracker.metrics(numbers, step=0)
    tracker.artifacts([run_dir / "eval" / split])
    tracker.finish("FINISHED")
