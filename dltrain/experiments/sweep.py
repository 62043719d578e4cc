"""``dltrain sweep``: a hyper-parameter search on Optuna, each trial a full run directory trained by a child
``dltrain fit`` process (a SIGKILL or an out-of-memory kill of a trial is a failed trial, not a dead sweep).

The sweep directory::

    SWEEP/sweep.json       the study's name and storage URL, the trial count (what --resume reads)
    SWEEP/config.yaml      the base config with its resolved sweep: section (--param flags included)
    SWEEP/study.db         the Optuna study (SQLite; another --storage URL keeps it elsewhere)
    SWEEP/trials/NNNN/     each trial's run directory; NNNN.yaml its config, NNNN.log its output
    SWEEP/trials.csv       one row per trial: state, value, parameters, epochs, CPU-seconds, why it failed
    SWEEP/best.yaml        the best trial's config, ready for dltrain fit
    SWEEP/plots/           optimisation history and parameter importances (optuna.visualization.matplotlib)

Several sweep processes (on one machine, or several with a shared database) run trials of one study: a trial
is asked for under a file lock in the sweep directory, so together they run exactly ``sweep.trials`` trials.
Each running trial carries its owner (host, pid, boot id) and a heartbeat (a user attribute renewed every
``HEARTBEAT`` seconds); a RUNNING trial whose owner is gone (same machine: its pid; elsewhere: a heartbeat
older than twice the interval plus 5 s) was left by a killed sweep: it is marked failed and queued again with
the same parameters (``retry_of``), once.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import json
import logging
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from dltrain.config import Config, SweepConfig, load_config, to_dict, to_yaml
from dltrain.console import result_line
from dltrain.errors import EXIT_INTERRUPTED, ConfigError, Interrupted, RunDirError
from dltrain.experiments import space as sp
from dltrain.experiments.study import TRIAL_ENV, make_pruner, open_storage, require_optuna, trial_env
from dltrain.fsutil import atomic_write_json, atomic_write_text
from dltrain.rundir.lock import CLOCK_SKEW, machine_identity, owner_alive
from dltrain.rundir.metrics_log import read_metrics
from dltrain.rundir.paths import create_run_dir

log = logging.getLogger(__name__)

SWEEP_FILE = "sweep.json"
HEARTBEAT_ENV = "DLTRAIN_SWEEP_HEARTBEAT"


def heartbeat_seconds() -> float:
    try:
        return max(0.2, float(os.environ.get(HEARTBEAT_ENV, 10)))
    except ValueError:
        return 10.0


def direction_of(metric: str, given: str) -> str:
    if given != "auto":
        return given
    return "minimize" if ("loss" in metric or "mae" in metric) else "maximize"


@dataclass
class Sweep:
    """An opened sweep: its directory, base config, space, and Optuna study."""

    dir: Path
    cfg: Config
    spec: SweepConfig
    dims: list[sp.Dimension]
    storage_url: str
    study: Any
    metric: str
    direction: str

    @property
    def trials_dir(self) -> Path:
        return self.dir / "trials"


# ---- opening ---------------------------------------------------------------------------------------------


def _prepare(cfg: Config, flags: list[str], trials: int | None) -> tuple[Config, list[sp.Dimension]]:
    dims = sp.build_space(cfg, flags)
    spec = cfg.sweep or SweepConfig()
    spec = spec.model_copy(
        update={"params": {d.key: d.spec for d in dims}, **({"trials": trials} if trials else {})}
    )
    cfg = cfg.model_copy(update={"sweep": spec})
    base = _base_dict(cfg)
    sp.check_endpoints(base, dims)
    if spec.sampler == "grid":
        for dim in dims:
            dim.grid()  # exit 2 for a float range
    return cfg, dims


def _base_dict(cfg: Config) -> dict[str, Any]:
    raw = to_dict(cfg)
    raw.pop("sweep", None)
    return raw


def _sampler(spec: SweepConfig, dims: list[sp.Dimension], seed: int) -> Any:
    optuna = require_optuna()
    if spec.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if spec.sampler == "grid":
        return optuna.samplers.GridSampler({d.key: d.grid() for d in dims}, seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def _load_study(sweep_dir: Path, info: dict[str, Any], cfg: Config, dims: list[sp.Dimension]) -> Any:
    optuna = require_optuna()
    spec = cfg.sweep or SweepConfig()
    storage = open_storage(info["storage"])
    metric = spec.metric or cfg.train.monitor
    try:
        return optuna.create_study(
            storage=storage,
            study_name=info["study_name"],
            direction=direction_of(metric, spec.direction),
            sampler=_sampler(spec, dims, cfg.seed),
            pruner=make_pruner(spec.pruner, spec.startup_trials, spec.warmup_epochs),
            load_if_exists=True,
        )
    except Exception as exc:  # an unreachable database surfaces here on first use
        import sqlalchemy.exc

        if isinstance(exc, sqlalchemy.exc.SQLAlchemyError):
            raise RunDirError(
                f"storage {info['storage']}: cannot be reached ({str(exc).splitlines()[0]})."
            ) from None
        raise


def create(
    config: Path,
    overrides: list[str],
    flags: list[str],
    trials: int | None,
    runs_dir: Path,
    sweep_dir: Path | None,
    storage: str | None,
) -> Sweep:
    """Check everything (config, space, endpoints, storage), then make the sweep directory."""
    cfg = load_config(config, overrides)
    cfg, dims = _prepare(cfg, flags, trials)
    require_optuna()
    if storage is not None:
        open_storage(storage)  # exit 2/5 naming the URL before the sweep directory exists
    if sweep_dir is not None:
        if (sweep_dir / SWEEP_FILE).exists():
            raise RunDirError(
                f"{sweep_dir} already holds a sweep; continue it (or join it from another process) with "
                f"dltrain sweep --resume {sweep_dir}"
            )
        if sweep_dir.exists() and any(sweep_dir.iterdir()):
            raise RunDirError(f"{sweep_dir} already holds files; give a new or empty --sweep-dir.")
        sweep_dir.mkdir(parents=True, exist_ok=True)
        target = sweep_dir
    else:
        target = create_run_dir(runs_dir, cfg.name, suffix="sweep")
    target = target.resolve()
    url = storage or f"sqlite:///{target / 'study.db'}"
    info = {
        "study_name": f"{cfg.name}-{target.name}",
        "storage": url,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": "config.yaml",
        "trials": cfg.sweep.trials if cfg.sweep else None,
    }
    atomic_write_text(target / "config.yaml", to_yaml(cfg))
    study = _load_study(target, info, cfg, dims)
    atomic_write_json(target / SWEEP_FILE, info)  # last: a sweep.json means a complete, resumable sweep
    return _opened(target, cfg, dims, url, study)


def reopen(sweep_dir: Path, trials: int | None) -> Sweep:
    """``--resume SWEEP_DIR``: continue a stopped sweep, or join a running one from another process."""
    path = sweep_dir / SWEEP_FILE
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunDirError(
            f"{sweep_dir}: no {SWEEP_FILE}; not a sweep directory made by dltrain sweep."
        ) from None
    except (OSError, ValueError) as exc:
        raise RunDirError(f"{path}: unreadable ({exc}).") from None
    cfg = load_config(sweep_dir / "config.yaml")
    cfg, dims = _prepare(cfg, [], trials)
    study = _load_study(sweep_dir, info, cfg, dims)
    return _opened(sweep_dir.resolve(), cfg, dims, info["storage"], study)


def _opened(target: Path, cfg: Config, dims: list[sp.Dimension], url: str, study: Any) -> Sweep:
    spec = cfg.sweep or SweepConfig()
    metric = spec.metric or cfg.train.monitor
    (target / "trials").mkdir(exist_ok=True)
    return Sweep(target, cfg, spec, dims, url, study, metric, direction_of(metric, spec.direction))


# ---- the loop --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _ask_lock(sweep: Sweep) -> Iterator[None]:
    """One sweep process at a time counts the trials and asks for a new one (so the total is exact)."""
    with open(sweep.dir / ".ask.lock", "a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _recover_stale(sweep: Sweep) -> list[str]:
    """Fail and requeue RUNNING trials whose sweep process is gone; return what was done, for the user."""
    optuna = require_optuna()
    TrialState = optuna.trial.TrialState
    storage = sweep.study._storage
    said = []
    trials = sweep.study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    lease = heartbeat_seconds()
    for t in trials:
        if t.state != TrialState.RUNNING:
            continue
        owner = t.user_attrs.get("owner") or {}
        beat = t.user_attrs.get("heartbeat")
        if beat is None and t.datetime_start is not None:
            beat = t.datetime_start.timestamp()
        alive, why = owner_alive({**owner, "renewed_unix": beat, "lease_seconds": lease})
        age = time.time() - float(beat) if isinstance(beat, int | float) else math.inf
        if alive and age > 2 * lease + CLOCK_SKEW:
            # A live pid but no heartbeat: the pid was reused, or the sweep hangs; either way it is not running it.
            alive, why = False, f"no heartbeat for {age:.0f}s"
        if alive:
            continue
        reason = f"its sweep process died ({why})"
        try:
            storage.set_trial_user_attr(t._trial_id, "fail_reason", reason)
            storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        except (optuna.exceptions.UpdateFinishedTrialError, RuntimeError):
            continue  # another sweep process got to it first
        if t.number not in retried and t.user_attrs.get("retry_of") is None:
            sweep.study.enqueue_trial(dict(t.params), user_attrs={"retry_of": t.number})
            said.append(
                f"trial {t.number} was left running by a sweep that died ({why}): failed, and queued again"
            )
        else:
            said.append(
                f"trial {t.number} was left running by a sweep that died ({why}): failed (already retried once)"
            )
    return said


def _count(sweep: Sweep) -> tuple[int, bool]:
    """(trials that count toward sweep.trials, whether a queued trial waits)."""
    optuna = require_optuna()
    TrialState = optuna.trial.TrialState
    trials = sweep.study.get_trials(deepcopy=False)
    superseded = {t.user_attrs.get("retry_of") for t in trials} - {None}
    waiting = any(t.state == TrialState.WAITING for t in trials)
    counted = [t for t in trials if t.state != TrialState.WAITING and t.number not in superseded]
    return len(counted), waiting


def run_sweep(sweep: Sweep) -> int:
    """Run trials until the study holds ``sweep.trials`` of them; return the exit code (0, or 130 on Ctrl-C)."""
    optuna = require_optuna()
    result_line(f"sweep: {sweep.dir}")
    result_line(
        f"study {sweep.study.study_name} ({sweep.storage_url}): {sweep.spec.trials} trials, {sweep.direction} "
        f"{sweep.metric}, sampler {sweep.spec.sampler}, pruner {sweep.spec.pruner}"
    )
    try:
        while True:
            with _ask_lock(sweep):
                for line in _recover_stale(sweep):
                    result_line(line)
                done, waiting = _count(sweep)
                if not waiting and done >= _limit(sweep):
                    break
                trial = sweep.study.ask()
                trial.set_user_attr("owner", {**machine_identity(), "pid": os.getpid()})
                trial.set_user_attr("heartbeat", time.time())
            _run_trial(sweep, trial, optuna)
    except (KeyboardInterrupt, Interrupted):
        write_outputs(sweep)
        result_line(
            f"stopped by Ctrl-C; the trial it stopped is queued again. Continue: dltrain sweep --resume {sweep.dir}"
        )
        return EXIT_INTERRUPTED
    write_outputs(sweep, plots=True)
    return _summary(sweep)


def _limit(sweep: Sweep) -> int:
    """How many trials to run: sweep.trials, and at most every point of a grid once."""
    if sweep.spec.sampler == "grid":
        return min(sweep.spec.trials, math.prod(len(d.grid()) for d in sweep.dims))
    return sweep.spec.trials


def _tell(sweep: Sweep, trial: Any, value: float | None = None, state: Any = None) -> None:
    """``study.tell``; Optuna's grid sampler calls ``study.stop()`` after its last point, which raises outside
    ``study.optimize`` once the trial is stored: that is the grid's end, not an error."""
    try:
        if state is None:
            sweep.study.tell(trial, value)
        else:
            sweep.study.tell(trial, state=state)
    except RuntimeError as exc:
        if "Study.stop" not in str(exc):
            raise


class _Stop(Exception):
    def __init__(self, signum: int) -> None:
        self.signum = signum


def _run_trial(sweep: Sweep, trial: Any, optuna: Any) -> None:
    number = trial.number
    name = f"{number:04d}"
    run_dir = sweep.trials_dir / name
    values: dict[str, Any] = {}
    try:
        for dim in sweep.dims:
            values[dim.key] = dim.suggest(trial)
        raw = sp.apply(_base_dict(sweep.cfg), values)
        cfg = sp.validate_trial_config(raw)
    except ConfigError as exc:
        _fail(sweep, trial, f"invalid config: {'; '.join(exc.problems) or exc.message}", values, optuna)
        return
    config_path = sweep.trials_dir / f"{name}.yaml"
    atomic_write_text(
        config_path, f"# trial {number} of sweep {sweep.dir}: {json.dumps(values)}\n" + to_yaml(cfg)
    )
    trial.set_user_attr("run_dir", str(run_dir))
    pruner = {
        "pruner": sweep.spec.pruner,
        "startup_trials": sweep.spec.startup_trials,
        "warmup_epochs": sweep.spec.warmup_epochs,
    }
    env = {
        **os.environ,
        TRIAL_ENV: trial_env(
            sweep.storage_url, sweep.study.study_name, trial._trial_id, number, sweep.metric, pruner
        ),
    }
    cmd = [sys.executable, "-m", "dltrain", "fit", str(config_path), "--run-dir", str(run_dir)]
    result_line(f"trial {number}: {_show(values)}")
    started = time.monotonic()
    with open(sweep.trials_dir / f"{name}.log", "wb") as logfile:
        proc = subprocess.Popen(
            cmd,
            stdout=logfile,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        rc = _wait(proc, trial)
    seconds = time.monotonic() - started
    trial.set_user_attr("wall_seconds", round(seconds, 2))
    record = _read_json(run_dir / "run.json")
    if isinstance(record, dict) and isinstance(record.get("cpu_seconds"), int | float):
        trial.set_user_attr("cpu_seconds", record["cpu_seconds"])
    if isinstance(rc, _Stop):
        reason = "stopped by Ctrl-C" if rc.signum == signal.SIGINT else "stopped by SIGTERM"
        _fail(sweep, trial, reason, values, optuna, retry=True)
        raise KeyboardInterrupt
    if rc != 0:
        why = record.get("reason") if isinstance(record, dict) else None
        if rc < 0:
            sig = signal.Signals(-rc).name
            why = f"killed by {sig}" + (" (out of memory?)" if sig == "SIGKILL" else "")
        _fail(
            sweep,
            trial,
            f"exit {rc}: {why or 'see ' + str(sweep.trials_dir / (name + '.log'))}",
            values,
            optuna,
        )
        return
    stop_reason = record.get("stop_reason") if isinstance(record, dict) else None
    rows = read_metrics(run_dir / "metrics.csv")
    trial.set_user_attr("epochs", len(rows))
    if isinstance(stop_reason, str) and stop_reason.startswith("pruned"):
        _tell(sweep, trial, state=optuna.trial.TrialState.PRUNED)
        result_line(f"trial {number}: pruned ({stop_reason})")
        return
    value = _best(rows, sweep.metric, sweep.direction)
    if value is None:
        _fail(sweep, trial, f"no finite {sweep.metric} in metrics.csv", values, optuna)
        return
    _tell(sweep, trial, value)
    result_line(f"trial {number}: {sweep.metric} {value:.4f} in {seconds:.0f}s")
    write_outputs(sweep)


def _die_with_parent() -> None:
    """In the child: SIGTERM when the sweep process dies (even by SIGKILL), so it checkpoints and stops."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _wait(proc: subprocess.Popen[bytes], trial: Any) -> int | _Stop:
    """Wait for the trial's process, renewing the heartbeat; Ctrl-C/SIGTERM are passed on and waited for."""
    beat = heartbeat_seconds() / 3
    stop: _Stop | None = None

    def on_signal(signum: int, _frame: Any) -> None:
        nonlocal stop
        if stop is None:
            stop = _Stop(signum)
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while True:
            try:
                rc = proc.wait(timeout=beat)
                break
            except subprocess.TimeoutExpired:
                with contextlib.suppress(Exception):
                    trial.set_user_attr("heartbeat", time.time())
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return stop if stop is not None else rc


def _fail(
    sweep: Sweep, trial: Any, reason: str, values: dict[str, Any], optuna: Any, retry: bool = False
) -> None:
    trial.set_user_attr("fail_reason", reason)
    _tell(sweep, trial, state=optuna.trial.TrialState.FAIL)
    if retry:
        sweep.study.enqueue_trial(dict(trial.params), user_attrs={"retry_of": trial.number})
    result_line(f"trial {trial.number}: failed ({reason})")
    write_outputs(sweep)


def _best(rows: list[dict[str, float]], metric: str, direction: str) -> float | None:
    values = [row[metric] for row in rows if metric in row and math.isfinite(row[metric])]
    if not values:
        return None
    return min(values) if direction == "minimize" else max(values)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _show(values: dict[str, Any]) -> str:
    return ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={json.dumps(v)}" for k, v in values.items()
    )


# ---- outputs ---------------------------------------------------------------------------------------------


def write_outputs(sweep: Sweep, plots: bool = False) -> None:
    """trials.csv and best.yaml (atomically, after every trial); the plots at the end."""
    trials = sweep.study.get_trials(deepcopy=False)
    keys = [d.key for d in sweep.dims]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        ["number", "state", sweep.metric, *keys, "epochs", "cpu_seconds", "wall_seconds", "run_dir", "note"]
    )
    for t in trials:
        note = t.user_attrs.get("fail_reason") or (
            f"retry of trial {t.user_attrs['retry_of']}" if t.user_attrs.get("retry_of") is not None else ""
        )
        writer.writerow(
            [
                t.number,
                t.state.name,
                "" if t.value is None else f"{t.value:.6g}",
                *(json.dumps(sp.decode(t.params[k])) if k in t.params else "" for k in keys),
                t.user_attrs.get("epochs", ""),
                t.user_attrs.get("cpu_seconds", ""),
                t.user_attrs.get("wall_seconds", ""),
                t.user_attrs.get("run_dir", ""),
                note,
            ]
        )
    atomic_write_text(sweep.dir / "trials.csv", buffer.getvalue())
    best = _best_trial(sweep)
    if best is not None:
        values = {k: sp.decode(v) for k, v in best.params.items()}
        cfg = sp.validate_trial_config(sp.apply(_base_dict(sweep.cfg), values))
        atomic_write_text(
            sweep.dir / "best.yaml",
            f"# best trial {best.number} of sweep {sweep.dir}: {sweep.metric} {best.value:.6g}\n"
            f"# {json.dumps(values)}\n# run: dltrain fit {sweep.dir / 'best.yaml'}\n" + to_yaml(cfg),
        )
    if plots:
        _plots(sweep)


def _best_trial(sweep: Sweep) -> Any:
    try:
        return sweep.study.best_trial
    except ValueError:
        return None


def _plots(sweep: Sweep) -> None:
    complete = [t for t in sweep.study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if not complete:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    out = sweep.dir / "plots"
    out.mkdir(exist_ok=True)
    drawings: list[tuple[str, Any]] = [("optimization_history.png", ovm.plot_optimization_history)]
    if len(complete) >= 2 and len(sweep.dims) >= 1:
        drawings.append(("param_importances.png", ovm.plot_param_importances))
    for filename, draw in drawings:
        try:
            ax: Any = draw(sweep.study)
            fig: Any = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
            buffer = io.BytesIO()
            fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
            plt.close(fig)
            from dltrain.fsutil import atomic_write_bytes

            atomic_write_bytes(out / filename, buffer.getvalue())
        except Exception as exc:  # a plot never fails the sweep (e.g. importances of a constant objective)
            log.warning("plot %s not drawn: %s", filename, exc)


def _summary(sweep: Sweep) -> int:
    trials = sweep.study.get_trials(deepcopy=False)
    states: dict[str, int] = {}
    for t in trials:
        states[t.state.name.lower()] = states.get(t.state.name.lower(), 0) + 1
    result_line("trials: " + ", ".join(f"{n} {s}" for s, n in sorted(states.items())))
    best = _best_trial(sweep)
    if best is None:
        raise RunDirError(
            f"{sweep.dir}: no trial completed; see {sweep.dir / 'trials.csv'} and trials/*.log."
        )
    values = {k: sp.decode(v) for k, v in best.params.items()}
    result_line(f"best: trial {best.number}, {sweep.metric} {best.value:.4f}: {_show(values)}")
    result_line(f"best config: {sweep.dir / 'best.yaml'}")
    result_line(f"next: dltrain fit {sweep.dir / 'best.yaml'}")
    return 0
