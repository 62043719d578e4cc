"""Renders bench/RESULTS.md from the raw figures in results.json (written by bench/run.py).

Every number in the report is computed here from the raw per-process and per-epoch records, so the report
can be re-rendered (``python bench/run.py --render``) without running anything.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

GOAL_DLTRAIN_VS_KERAS = 1.0  # images per CPU-second, dltrain / plain Keras
GOAL_DLTRAIN_VS_TORCH = 1.4  # images per CPU-second, dltrain / plain PyTorch
GOAL_TO_90_SPEEDUP = 3.0  # CPU-seconds to 90% test accuracy, plain / dltrain
GOAL_FINAL_ACCURACY = 0.925  # within the plain script's whole CPU budget
GOAL_MEMORY = 0.8  # max RSS, dltrain / plain Keras
GOAL_STARTUP = 0.10  # dltrain --help / import tensorflow
GOAL_LR_FIND = 0.15  # the sweep / one epoch
LINEAR_TOLERANCE = 0.15  # per-image cost within 15% of 1x counts as linear
# Issue 15 (performance), beside issue 6's goals above:
GOAL15_ACCURACY = 0.930  # test accuracy within the plain script's 20-epoch CPU budget
GOAL15_TO_90_SPEEDUP = 6.0  # CPU-seconds to 90% test accuracy, plain / dltrain
GOAL15_MEMORY = 0.6  # max RSS, dltrain / plain Keras (Fashion-MNIST fit)
GOAL15_PRECISION_POINTS = 0.3  # test accuracy under auto at most this far below float32, percentage points
GOAL15_EVALUATE = 1.5  # dltrain evaluate (small run) / import tensorflow, wall


def med(values: Iterable[float]) -> float:
    vals = list(values)
    return statistics.median(vals) if vals else float("nan")


def spread(values: Sequence[float], fmt: str = "{:.1f}") -> str:
    """``median (min-max)``, or the one value."""
    if not values:
        return "n/a"
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(med(values))} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def met(ok: bool | None) -> str:
    return "n/a" if ok is None else ("**met**" if ok else "**not met**")


def measured_epochs(run: dict[str, Any]) -> list[dict[str, Any]]:
    """Epochs after the first (tracing, warm-up), or the only one."""
    epochs = run["epochs"]
    return [e for e in epochs if e["epoch"] > 1] or epochs


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------ sections


def throughput(section: dict[str, Any], goals: list[list[str]]) -> str:
    runs = section["runs"]
    out = [
        "## 1. Throughput\n",
        f"Each run trains {section['epochs_per_run']} epochs in a fresh process; the first epoch (tracing, "
        "warm-up) is dropped and the rest are pooled over the rounds. CPU-s = user + system CPU time of the "
        "process during the epoch (dltrain: `cpu_seconds` of metrics.csv; plain scripts: `os.times()` around the "
        "epoch). Images per CPU-second = training images / median CPU-s per epoch. The process columns are "
        "whole runs (start-up, data, tracing, dltrain's checkpoints and model export included). Every runner "
        "uses its library's default threads (2 here); PyTorch runs with OMP_WAIT_POLICY=PASSIVE, because its "
        "OpenMP threads' default busy-waiting tripled its CPU-s per step while other tenants held the cores "
        "(bench/run.py, TORCH_ENV).\n\n",
    ]
    rows, ips = [], {}
    for runner, rs in runs.items():
        cpu = [e["cpu_seconds"] for r in rs for e in measured_epochs(r)]
        wall = [e["seconds"] for r in rs for e in measured_epochs(r)]
        images = rs[0]["train_images"]
        ips[runner] = [images / med(e["cpu_seconds"] for e in measured_epochs(r)) for r in rs]
        ips_wall = [images / med(e["seconds"] for e in measured_epochs(r)) for r in rs]
        rows.append([
            runner, f"{rs[0]['parameters']:,}", f"{images:,}", spread(cpu), spread(wall),
            f"{images / med(cpu):.0f}", f"{med(ips_wall):.0f}",
            spread([r["process"]["cpu"] for r in rs]), spread([r["process"]["wall"] for r in rs]),
        ])  # fmt: skip
    out.append(table(
        ["runner", "parameters", "images/epoch", "CPU-s/epoch", "wall-s/epoch", "images/CPU-s",
         "images/wall-s", "process CPU-s", "process wall-s"], rows))  # fmt: skip
    out.append("\nRatios of images per CPU-second (and per wall second), paired by round, so both sides of a "
               "ratio ran minutes apart under the same load:\n\n")  # fmt: skip
    ratio_rows = []
    for other, goal in (("keras", GOAL_DLTRAIN_VS_KERAS), ("torch", GOAL_DLTRAIN_VS_TORCH)):
        if other not in ips or "dltrain" not in ips:
            continue
        paired = [d / o for d, o in zip(ips["dltrain"], ips[other], strict=False)]
        wall_paired = [
            med(e["seconds"] for e in measured_epochs(o)) / med(e["seconds"] for e in measured_epochs(d))
            for d, o in zip(runs["dltrain"], runs[other], strict=False)
        ]
        ok = med(paired) >= goal
        ratio_rows.append([f"dltrain / {other}", spread(paired, "{:.2f}"), spread(wall_paired, "{:.2f}"),
                           f">= {goal:.1f}x", met(ok)])  # fmt: skip
        goals.append(
            [
                f"6.1 throughput vs plain {other}",
                f">= {goal:.1f}x images/CPU-s",
                f"{med(paired):.2f}x",
                met(ok),
            ]
        )
    out.append(table(["ratio", "per CPU-second", "per wall second", "goal (CPU)", ""], ratio_rows))
    return "".join(out)


GOAL_RECOMMENDED_DEFAULTS = 2.0  # dltrain defaults / plain Keras float32, images per CPU-second
GOAL_RECOMMENDED_FLOAT32 = 1.3  # dltrain float32 / plain Keras float32


def recommended(section: dict[str, Any], goals: list[list[str]]) -> str:
    runs = section["runs"]
    out = [
        "## 1b. The recommended network\n\n",
        "`configs/fashion_mnist_cnn.yaml`'s network (conv-BatchNorm-relu-pool x2, dense 128; 421,930 parameters, 421,738 of them trainable) "
        "as a plain Keras `model.fit` script in float32 (`bench/plain_keras.py --network recommended`: stock "
        "layers, Adam 1e-3), dltrain with its defaults (`mixed_precision: auto`, the fused batch norm) and "
        f"dltrain in float32 (`runtime.mixed_precision=off`); dltrain with `--set` {', '.join(section['sets'])}, "
        f"so all train on the same images without a validation pass. {section['epochs_per_run']} epochs per run, "
        "the first dropped; per-epoch CPU-s as in section 1. Test accuracy: the plain script's after its last "
        "epoch, dltrain's from `dltrain evaluate` (few epochs: a sanity check, not the accuracy goal).\n\n",
    ]
    rows, cpu_by_round = [], {}
    for runner, rs in runs.items():
        cpu = [e["cpu_seconds"] for r in rs for e in measured_epochs(r)]
        images = rs[0]["train_images"]
        cpu_by_round[runner] = [med(e["cpu_seconds"] for e in measured_epochs(r)) for r in rs]
        rows.append([
            runner, rs[0].get("precision", "float32"), f"{rs[0]['parameters']:,}", f"{images:,}", spread(cpu),
            f"{images / med(cpu):.0f}", spread([r["process"]["cpu"] for r in rs]),
            spread([r["test_accuracy"] for r in rs if r.get("test_accuracy") is not None], "{:.4f}"),
        ])  # fmt: skip
    out.append(table(["runner", "precision", "parameters", "images/epoch", "CPU-s/epoch", "images/CPU-s",
                      "process CPU-s", "test accuracy"], rows))  # fmt: skip
    out.append("\nRatios of images per CPU-second, paired by round (the same images, so the ratio of CPU-s per "
               "epoch); the raw CPU-s per epoch of each pair beside it:\n\n")  # fmt: skip
    ratio_rows = []
    for runner, goal, name in (
        (
            "dltrain",
            GOAL_RECOMMENDED_DEFAULTS,
            "15.1 recommended network, dltrain defaults vs plain Keras float32",
        ),
        ("dltrain_float32", GOAL_RECOMMENDED_FLOAT32, "15.1 recommended network, both float32"),
    ):
        if runner not in cpu_by_round or "keras" not in cpu_by_round:
            continue
        pairs = list(zip(cpu_by_round["keras"], cpu_by_round[runner], strict=False))
        paired = [k / d for k, d in pairs]
        raw = "; ".join(f"{k:.1f} / {d:.1f}" for k, d in pairs)
        ok = med(paired) >= goal
        ratio_rows.append([f"{runner} / keras", spread(paired, "{:.2f}"), raw, f">= {goal:.1f}x", met(ok)])
        goals.append(
            [name, f">= {goal:.1f}x images/CPU-s", f"{med(paired):.2f}x (CPU-s/epoch {raw})", met(ok)]
        )
    out.append(table(["ratio", "per CPU-second", "keras / dltrain CPU-s per epoch", "goal", ""], ratio_rows))
    return "".join(out)


def _memory_table(section: dict[str, Any], goal: float, name: str, goals: list[list[str]]) -> tuple[str, int]:
    runs = section["runs"]
    rows = [
        [r, spread([x["process"]["max_rss_mb"] for x in rs], "{:.0f}"),
         spread([x["process"].get("peak_anon_mb", 0.0) for x in rs], "{:.0f}")
         if any(x["process"].get("peak_anon_mb") for x in rs) else "not sampled"]
        for r, rs in runs.items()
    ]  # fmt: skip
    pairs = list(zip(runs["dltrain"], runs["keras"], strict=False))
    paired = [d["process"]["max_rss_mb"] / k["process"]["max_rss_mb"] for d, k in pairs]
    anon = [
        d["process"]["peak_anon_mb"] / k["process"]["peak_anon_mb"]
        for d, k in pairs
        if d["process"].get("peak_anon_mb") and k["process"].get("peak_anon_mb")
    ]
    ok = med(paired) <= goal
    raw = "; ".join(f"{d['process']['max_rss_mb']:.0f} / {k['process']['max_rss_mb']:.0f}" for d, k in pairs)
    goals.append([name, f"<= {goal}x max RSS", f"{med(paired):.2f}x (MB {raw})", met(ok)])
    text = (
        table(["runner", "max RSS MB", "peak RssAnon MB (sampled)"], rows)
        + f"\ndltrain / plain Keras max RSS, paired by round: {spread(paired, '{:.2f}')} (MB, dltrain / keras: "
        f"{raw}; goal <= {goal}x: {met(ok)})"
        + (f"; peak anonymous memory: {spread(anon, '{:.2f}')}" if anon else "")
        + "\n"
    )
    return text, section["runs"]["dltrain"][0]["train_images"]


def memory(results: dict[str, Any], goals: list[list[str]]) -> str:
    sections = results["sections"]
    out = [
        "## 3. Peak memory\n\nMax RSS (`ru_maxrss` from `os.wait4`) of fresh processes, and the largest "
        "anonymous memory (`RssAnon` of /proc/PID/status, sampled every 20 ms: the process's own memory, "
        "without the shared libraries' pages it maps; `import tensorflow` alone maps about 500 MB of those). "
        "The plain script converts the images to float32 up front (as keras.io does); dltrain keeps them uint8 "
        "(one copy, read in place by TensorFlow) and casts per batch.\n\n"
    ]
    if "recommended" in sections:
        text, images = _memory_table(
            sections["recommended"], GOAL15_MEMORY, "15.3 peak memory of the Fashion-MNIST fit vs plain Keras",
            goals,
        )  # fmt: skip
        out.append(
            f"The recommended network's runs of section 1b ({images:,} images; issue 15's goal):\n\n{text}\n"
        )
    if "throughput" in sections:
        text, images = _memory_table(
            sections["throughput"], GOAL_MEMORY, "6.3 peak memory vs plain Keras (convnet)", goals
        )
        out.append(
            f"The throughput runs of section 1 ({images:,} images, the convnet; issue 6's goal):\n\n{text}"
        )
    return "".join(out)


def _tta_dltrain(run: dict[str, Any], sweep_cpu: float | None) -> dict[str, Any]:
    train_cpu = sum(e["cpu_seconds"] for e in run["epochs"])
    extra = sweep_cpu if run["lr_auto"] and sweep_cpu is not None else 0.0
    lr = run.get("learning_rate") or {}
    return {
        "label": (
            f"{Path(run['config']).name}{' as shipped' if run.get('shipped') else ''}, "
            if run.get("config")
            else ""
        )
        + f"{run['total_epochs']} epochs"
        + (" (learning_rate auto)" if run["lr_auto"] else ""),
        "epochs": len(run["epochs"]),
        "cpu": train_cpu + extra,
        "wall": sum(e["seconds"] for e in run["epochs"]),
        "process_cpu": run["process"]["cpu"],
        "test": run["evaluate"]["test_accuracy"],
        "val": run["epochs"][-1].get("val_accuracy"),
        "lr": lr.get("value"),
        "lr_source": lr.get("source", ""),
    }


def time_to_accuracy(section: dict[str, Any], sweep_cpu: float | None, goals: list[list[str]]) -> str:
    plain = section["plain"]
    out = [
        "## 2. Time to accuracy\n",
        f"Plain Keras script: constant Adam 1e-3, all {plain['train_images']:,} training images, the test set scored after every "
        "epoch (that scoring is timed apart and not counted). dltrain: `configs/fashion_mnist_cnn.yaml` as "
        "shipped (BatchNorm, dense 128, dropout 0.3, one-cycle, Adam peak 3e-3, 10% of train held out for "
        "validation), one run per total epoch count (one-cycle's schedule depends on it), each scored with "
        "`dltrain evaluate` (its best epoch by val_loss, on the 10,000 test images). dltrain's CPU-s are the "
        "sum of metrics.csv `cpu_seconds` (its per-epoch validation included); a `learning_rate: auto` run "
        "also counts its lr-find sweep (section 5). Also `configs/fashion_mnist_fast.yaml` as shipped (the "
        "quickest good model: no BatchNorm, dropout 0.1, one-cycle peak 5e-3, 2 epochs). Each dltrain run and "
        "the plain script's 20 epochs are single runs: their CPU-s move with the machine's load (hyperthread "
        "contention), so compare runs made under similar load (the header's load averages).\n\n",
    ]
    cum_cpu = cum_wall = 0.0
    rows, first90 = [], None
    for e in plain["epochs"]:
        cum_cpu += e["cpu_seconds"]
        cum_wall += e["seconds"]
        if first90 is None and e["test_accuracy"] >= 0.90:
            first90 = (e["epoch"], cum_cpu)
        rows.append([e["epoch"], f"{e['cpu_seconds']:.1f}", f"{cum_cpu:.0f}", f"{cum_wall:.0f}",
                     f"{e['test_accuracy']:.4f}", f"{e['test_cpu_seconds']:.1f}"])  # fmt: skip
    plain_total = cum_cpu
    out.append("Plain Keras script, per epoch:\n\n")
    out.append(table(["epoch", "CPU-s", "cumulative CPU-s", "cumulative wall-s", "test accuracy",
                      "test scoring CPU-s (not counted)"], rows))  # fmt: skip
    runs = [_tta_dltrain(r, sweep_cpu) for r in section["dltrain"]]
    out.append("\ndltrain, recommended configs (fashion_mnist_cnn.yaml unless named):\n\n")
    out.append(table(
        ["run", "epochs run", "training CPU-s", "training wall-s", "fit process CPU-s", "learning rate",
         "last val accuracy", "test accuracy"],
        [[r["label"], r["epochs"], f"{r['cpu']:.0f}", f"{r['wall']:.0f}", f"{r['process_cpu']:.0f}",
          f"{r['lr']:.3g} ({r['lr_source']})" if r["lr"] else "", f"{r['val']:.4f}" if r["val"] else "",
          f"{r['test']:.4f}"] for r in runs],
    ))  # fmt: skip
    reached = [r for r in runs if r["test"] >= 0.90]
    best90 = min(reached, key=lambda r: r["cpu"]) if reached else None
    within = [r for r in runs if r["cpu"] <= plain_total]
    best = max(within, key=lambda r: r["test"]) if within else None
    if first90 and best90:
        speedup = first90[1] / best90["cpu"]
        measured = (f"plain {first90[1]:.0f} CPU-s ({first90[0]} epochs) / dltrain {best90['cpu']:.0f} CPU-s "
                    f"({best90['label']}) = {speedup:.2f}x")  # fmt: skip
    else:
        speedup = None
        measured = f"plain reached 90%: {'yes' if first90 else 'no'}; dltrain reached 90%: {'yes' if best90 else 'no'}"
    in_budget = (
        f"{best['test']:.2%} in {best['cpu']:.0f} CPU-s ({best['label']})" if best else "no run within budget"
    )
    # The same two measures, judged by issue 6's and by issue 15's thresholds.
    for faster, accurate, times, accuracy in (
        ("6.2a 90% test accuracy sooner than plain", "6.2b accuracy within the plain script's CPU budget",
         GOAL_TO_90_SPEEDUP, GOAL_FINAL_ACCURACY),
        ("15.2b 90% test accuracy sooner than plain",
         "15.2a accuracy within the plain script's 20-epoch CPU budget", GOAL15_TO_90_SPEEDUP, GOAL15_ACCURACY),
    ):  # fmt: skip
        ok: bool | None = (speedup >= times) if speedup is not None else (None if not first90 else False)
        goals.append([faster, f">= {times:.0f}x fewer CPU-s", measured, met(ok)])
        ok_budget = best is not None and best["test"] >= accuracy
        goals.append(
            [accurate, f">= {accuracy:.1%} in <= {plain_total:.0f} CPU-s", in_budget, met(ok_budget)]
        )
    last = plain["epochs"][-1]
    out.append(
        f"\nPlain script: 90% after {first90[0] if first90 else 'never'} epochs"
        f"{f' ({first90[1]:.0f} CPU-s)' if first90 else ''}; {last['test_accuracy']:.2%} after {last['epoch']} "
        f"epochs ({plain_total:.0f} CPU-s).\n"
    )
    return "".join(out)


def lr_find_cost(
    section: dict[str, Any], epoch_cpu: float | None, goals: list[list[str]]
) -> tuple[str, float | None]:
    per_step, sweeps, points = [], [], []
    for d, s in zip(section["default"], section["short"], strict=False):
        step = (d["process"]["cpu"] - s["process"]["cpu"]) / max(d["points"] - s["points"], 1)
        per_step.append(step)
        sweeps.append(step * d["points"])
        points.append(d["points"])
    sweep = med(sweeps) if sweeps else None
    d0 = section["default"][0]
    suggestions = ", ".join(f"{r['suggestion']:.3g}" for r in section["default"] if r["suggestion"])
    rows = [
        ["lr-find, default (num_steps auto)", spread([r["process"]["cpu"] for r in section["default"]]),
         spread([r["process"]["wall"] for r in section["default"]]), spread([float(r["points"]) for r in section["default"]], "{:.0f}")],
        ["lr-find, lr_find.num_steps=10", spread([r["process"]["cpu"] for r in section["short"]]),
         spread([r["process"]["wall"] for r in section["short"]]), spread([float(r["points"]) for r in section["short"]], "{:.0f}")],
    ]  # fmt: skip
    text = [
        "## 5. lr-find cost\n\nMethod: `dltrain lr-find configs/fashion_mnist_cnn.yaml` with the default (auto) "
        "sweep, and again with `lr_find.num_steps=10`; both processes pay the same start-up, data loading, "
        "model build, tracing and plot, so the difference in process CPU-s divided by the difference in steps "
        "is the CPU cost of one sweep step; times the default sweep's steps it is the sweep. One epoch = the "
        "median `cpu_seconds` of epochs 2+ of the longest dltrain run of section 2 (same config, "
        f"{d0['steps_per_epoch']} steps, its validation pass included).\n\n",
        table(["command", "process CPU-s", "process wall-s", "steps run"], rows),
        f"\nSuggestion (rule {d0['rule']}): {suggestions}."
        f" CPU per sweep step: {spread(per_step, '{:.3f}')} s.",
    ]
    if sweep is not None and epoch_cpu:
        frac = sweep / epoch_cpu
        ok = frac <= GOAL_LR_FIND
        text.append(f" Sweep: {sweep:.1f} CPU-s; one epoch: {epoch_cpu:.1f} CPU-s; fraction **{frac:.1%}** "
                    f"(goal <= {GOAL_LR_FIND:.0%}: {met(ok)}).\n")  # fmt: skip
        goals.append(
            [
                "6.5 lr-find cost",
                f"<= {GOAL_LR_FIND:.0%} of an epoch",
                f"{frac:.1%} ({sweep:.1f} / {epoch_cpu:.1f} CPU-s)",
                met(ok),
            ]
        )
    else:
        text.append(" (no epoch figure: run the time_to_accuracy section too)\n")
    return "".join(text), sweep


def startup(section: dict[str, Any], goals: list[list[str]]) -> str:
    runs = section["runs"]
    rows = [[f"`{name}`", spread([r["wall"] for r in rs], "{:.2f}"), spread([r["cpu"] for r in rs], "{:.2f}"),
             spread([r["max_rss_mb"] for r in rs], "{:.0f}")] for name, rs in runs.items()]  # fmt: skip
    cli, tf = runs["dltrain --help"], runs["import tensorflow"]
    wall = med(r["wall"] for r in cli) / med(r["wall"] for r in tf)
    cpu = med(r["cpu"] for r in cli) / med(r["cpu"] for r in tf)
    ok = wall <= GOAL_STARTUP
    goals.append(
        [
            "6.4 CLI start-up vs import tensorflow",
            f"<= {GOAL_STARTUP:.0%}",
            f"{wall:.1%} wall, {cpu:.1%} CPU",
            met(ok),
        ]
    )
    text = (
        "## 4. CLI start-up\n\nFresh processes, alternating; the goals are judged on wall time (what a user waits). "
        "`dltrain evaluate` scores a run of `configs/colors_mlp.yaml` (a small CSV, trained first, not timed).\n\n"
        + table(["command", "wall s", "CPU-s", "max RSS MB"], rows)
        + f"\n`dltrain --help` / `import tensorflow`: {wall:.1%} of the wall time, {cpu:.1%} of the CPU time "
        f"(goal <= {GOAL_STARTUP:.0%}: {met(ok)}).\n"
    )
    if "dltrain evaluate" in runs:
        ev = runs["dltrain evaluate"]
        pairs = list(zip(ev, tf, strict=False))
        ratio_wall = [e["wall"] / t["wall"] for e, t in pairs]
        ratio_cpu = [e["cpu"] / t["cpu"] for e, t in pairs]
        ok5 = med(ratio_wall) <= GOAL15_EVALUATE
        raw = "; ".join(f"{e['wall']:.1f} / {t['wall']:.1f}" for e, t in pairs)
        goals.append(["15.5 dltrain evaluate of a small run vs import tensorflow", f"<= {GOAL15_EVALUATE}x wall",
                      f"{med(ratio_wall):.2f}x wall (s: {raw}), {med(ratio_cpu):.2f}x CPU", met(ok5)])  # fmt: skip
        text += (
            f"\n`dltrain evaluate` / `import tensorflow`, paired (each evaluate beside the import run just before "
            f"it): {spread(ratio_wall, '{:.2f}')} of the wall time, {spread(ratio_cpu, '{:.2f}')} of the CPU "
            f"time (goal <= {GOAL15_EVALUATE}x wall: {met(ok5)}).\n"
        )
    return text


def scaling(section: dict[str, Any]) -> str:
    cases = section["cases"]
    base = next(c for c in cases if c["case"].startswith("1x"))

    def cost(c: dict[str, Any]) -> float:
        return med(e["cpu_seconds"] for e in measured_epochs(c))

    base_per_image = cost(base) / base["train_images"]
    base_rss = base["process"]["max_rss_mb"]
    rows, verdicts = [], []
    for c in cases:
        per_image = cost(c) / c["train_images"]
        rel = per_image / base_per_image
        rows.append([
            c["case"], f"{c['train_images']:,}", f"{c['parameters']:,}", f"{cost(c):.1f}",
            f"{1000 * per_image:.2f}", f"{rel:.2f}", f"{med(e['seconds'] for e in measured_epochs(c)):.1f}",
            f"{c['process']['max_rss_mb']:.0f}", f"{c['process']['max_rss_mb'] - base_rss:+.0f}",
        ])  # fmt: skip
        if c["case"].endswith("x data") and c is not base:
            verdicts.append(abs(rel - 1) <= LINEAR_TOLERANCE)
    linear = all(verdicts) if verdicts else None
    growth = [
        (c["process"]["max_rss_mb"] - base_rss) / (c["train_images"] - base["train_images"]) * 1000
        for c in cases
        if c["case"].endswith("x data") and c is not base
    ]
    return (
        f"## 6. How cost grows\n\n`dltrain fit bench/configs/mnist_convnet.yaml`, {section['epochs_per_run']} "
        "epoch(s) per run, data from an npz of the real training set repeated k times (`np.tile`); bigger "
        "networks on the 1x data (`--set model.filters=...`). "
        + (
            "CPU-s of the epochs after the first.\n\n"
            if section["epochs_per_run"] > 1
            else "CPU-s of the one epoch, its tracing included (a few CPU-s at most: in section 1 a first epoch "
            "costs about what the later ones do).\n\n"
        )
        + table(
            [
                "case",
                "train images",
                "parameters",
                "CPU-s/epoch",
                "CPU-ms/image",
                "per image vs 1x",
                "wall-s/epoch",
                "max RSS MB",
                "RSS vs 1x MB",
            ],
            rows,
        )  # fmt: skip
        + f"\nCPU time grows linearly with the data (per-image cost within {LINEAR_TOLERANCE:.0%} of 1x at every "
        f"size): **{'yes' if linear else 'no' if linear is not None else 'n/a'}**. Peak memory grows by "
        f"{spread(growth, '{:.2f}')} MB per 1,000 extra training images (784 bytes of uint8 pixels each = "
        "0.78 MB per 1,000 per copy held).\n"
    )


def _score(run: dict[str, Any]) -> tuple[str, float]:
    """The test score a precision run is judged by: accuracy (classification) or R^2 (regression)."""
    test = run["test"]
    return ("accuracy", test["accuracy"]) if "accuracy" in test else ("r2", test["r2"])


def precision(section: dict[str, Any], goals: list[list[str]]) -> str:
    by_config: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for run in section["runs"]:
        by_config.setdefault(run["config"], {}).setdefault(run["setting"], []).append(run)
    rows, failing = [], []
    for name, settings in by_config.items():
        auto, off = settings.get("auto", []), settings.get("off", [])
        if not auto or not off:
            continue
        metric, _ = _score(auto[0])
        a = [_score(r)[1] * 100 for r in auto]
        o = [_score(r)[1] * 100 for r in off]
        diff = med(a) - med(o)
        ok = diff >= -GOAL15_PRECISION_POINTS  # "not lower" (issue 15's Keep): better under auto is no fault
        if not ok:
            failing.append(name)
        cpu_a, cpu_o = med(r["train_cpu"] for r in auto), med(r["train_cpu"] for r in off)
        rows.append([
            f"`{name}`", auto[0]["precision"], auto[0]["test"]["examples"], len(auto), metric,
            spread(a, "{:.2f}"), spread(o, "{:.2f}"), f"{diff:+.2f}",
            f"{max(o) - min(o):.2f}" if len(o) > 1 else "", f"{cpu_a:.1f} / {cpu_o:.1f}", met(ok),
        ])  # fmt: skip
    n_ok = len(rows) - len(failing)
    goals.append([
        "15.4 shipped configs' test score under auto vs float32",
        f"at most {GOAL15_PRECISION_POINTS} points below", f"{n_ok} of {len(rows)} configs"
        + (f" (not: {', '.join(failing)})" if failing else ""), met(not failing and bool(rows)),
    ])  # fmt: skip
    reason = next((r["reason"] for r in section["runs"] if r["setting"] == "auto"), "")
    return (
        "## 7. Precision: `mixed_precision: auto` against float32\n\n"
        "Every shipped config that trains offline, as shipped, once with `runtime.mixed_precision` auto and "
        f"once off (float32), per seed; each run scored by `dltrain evaluate` on its test split (accuracy in "
        f"%, R^2 x 100 for regression). `auto` here: {reason or 'n/a'}. Medians over seeds; 'float32 spread' is "
        "the range between seeds under float32 alone, i.e. how far two float32 runs land apart. A config "
        f"passes when auto's median is at most {GOAL15_PRECISION_POINTS} points below float32's (higher is no "
        "fault). Small test splits move in large steps: one example of 30 (colours) is 3.3 points, of 360 "
        "(digits) 0.28.\n\n"
        + table(
            [
                "config",
                "auto picked",
                "test examples",
                "seeds",
                "score",
                "auto",
                "float32",
                "auto - float32",
                "float32 spread",
                "training CPU-s auto / float32",
                "not 0.3 below",
            ],
            rows,
        )  # fmt: skip
    )


# ---------------------------------------------------------------------------------------------- page


def longest_run_epoch_cpu(results: dict[str, Any]) -> float | None:
    tta = results["sections"].get("time_to_accuracy")
    if not tta or not tta["dltrain"]:
        return None
    longest = max(tta["dltrain"], key=lambda r: len(r["epochs"]))
    return med(e["cpu_seconds"] for e in measured_epochs(longest))


def commits(results: dict[str, Any]) -> str:
    """The commit measured; per section when a re-run (--only) measured a later one."""
    by_section = {name: s.get("dltrain_commit") for name, s in results["sections"].items()}
    distinct = {c for c in by_section.values() if c}
    if len(distinct) <= 1:
        return next(iter(distinct), results["environment"]["dltrain_commit"])
    return "; ".join(f"{name}: {c}" for name, c in by_section.items())


def sections_measured(results: dict[str, Any]) -> str:
    """When, where and on which commit each section ran (``--only`` re-runs some sections, keeps the rest)."""
    rows = [
        [name, sec.get("date", results["date"]), sec.get("machine", "not recorded"),
         sec.get("dltrain_commit") or "", f"{sec.get('wall_seconds', 0) / 60:.0f}"]
        for name, sec in results["sections"].items()
    ]  # fmt: skip
    return "\nSections (ratios are only taken within one section's runs):\n\n" + table(
        ["section", "measured", "machine", "dltrain commit", "wall min"], rows
    )


def render(results: dict[str, Any]) -> str:
    env, sections, plan = results["environment"], results["sections"], results["plan"]
    goals: list[list[str]] = []
    body: list[str] = []
    if "throughput" in sections:
        body.append(throughput(sections["throughput"], goals))
    if "recommended" in sections:
        body.append(recommended(sections["recommended"], goals))
    sweep = None
    lr_text = ""
    if "lr_find" in sections:
        lr_text, sweep = lr_find_cost(sections["lr_find"], longest_run_epoch_cpu(results), goals)
    if "time_to_accuracy" in sections:
        body.append(time_to_accuracy(sections["time_to_accuracy"], sweep, goals))
    if "throughput" in sections or "recommended" in sections:
        body.append(memory(results, goals))
    if "startup" in sections:
        body.append(startup(sections["startup"], goals))
    if lr_text:
        body.append(lr_text)
    if "scaling" in sections:
        body.append(scaling(sections["scaling"]))
    if "precision" in sections:
        body.append(precision(sections["precision"], goals))
    goals.sort(key=lambda g: (int(g[0].split(".")[0]), g[0]))
    issue15 = [g for g in goals if g[0].startswith("15.")]
    issue6 = [g for g in goals if not g[0].startswith("15.")]
    load = f"{env['load_average_start'][0]:.1f} at the start, {env.get('load_average_end', [float('nan')])[0]:.1f} at the end"
    header = (
        "# dltrain benchmark results\n\n"
        "Generated by `bench/run.py` (do not edit by hand; `bench/README.md` says how to run and read it).\n\n"
        f"- Date: {results['date']}; mode **{plan['mode']}**; command `{results['command']}`; "
        f"bench wall time {results.get('bench_wall_seconds', 0) / 60:.0f} min\n"
        f"- Machine: {env['cpu']}, {env['cores']} cores, {env['memory_gib']} GiB, Linux {env['kernel']}; shared "
        f"with other tenants (1-minute load average {load})\n"
        f"- Versions: Python {env['python']}, TensorFlow {env['tensorflow']}, Keras {env['keras']}, "
        f"PyTorch {env['torch']}, NumPy {env['numpy']}; dltrain commit {commits(results)}\n"
        f"- Data: Fashion-MNIST from Debian's dataset-fashion-mnist, {results['train_images']:,} training images; "
        "network: keras.io mnist_convnet with 'same' padding (conv32-pool-conv64-pool-dropout0.5-dense10), "
        "batch 128, Adam 1e-3 (sections 1, 3, 6)\n"
        "- CPU-s = user + system CPU time of the process; medians, with (min-max) over repeats\n"
        + sections_measured(results)
        + "\n"
        "## Goals of issue 15 (performance)\n\n"
        + table(["goal", "target", "measured (raw figures beside each ratio)", ""], issue15)
        + "\n## Goals of issue 6 (the first benchmark)\n\n"
        + table(["goal", "target", "measured", ""], issue6)
        + "\n"
    )
    return header + "\n".join(body)
