"""Runtime set-up: seeds, determinism, precision and the tf.distribute strategy (DESIGN.md section 2)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

import keras
import tensorflow as tf

from dltrain.config import RuntimeConfig
from dltrain.errors import ConfigError

log = logging.getLogger(__name__)

# Test and power-user aid: split the host CPU into N logical devices before TF starts, so MirroredStrategy
# can be exercised on a machine without GPUs. Read once, before any other TF op.
CPU_DEVICES_ENV = "DLTRAIN_CPU_DEVICES"


@dataclass
class Runtime:
    strategy: tf.distribute.Strategy
    strategy_name: str
    reason: str
    replicas: int
    precision: str
    jit_compile: bool
    devices: list[str] = field(default_factory=list)
    workers: int = 1
    worker_index: int = 0
    is_chief: bool = True

    def describe(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy_name,
            "reason": self.reason,
            "replicas": self.replicas,
            "devices": self.devices,
            "precision": self.precision,
            "jit_compile": self.jit_compile,
            "workers": self.workers,
        }


def _split_cpu() -> None:
    wanted = os.environ.get(CPU_DEVICES_ENV)
    if not wanted:
        return
    try:
        count = int(wanted)
    except ValueError:
        raise ConfigError(f"{CPU_DEVICES_ENV}={wanted!r} must be a whole number of logical CPUs.") from None
    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
        )
    except RuntimeError:  # already initialised (a second command in one process): keep what is there
        log.debug("logical CPU devices already configured")


def _pick_strategy(name: str) -> tuple[tf.distribute.Strategy, str, str]:
    gpus = tf.config.list_logical_devices("GPU")
    cpus = tf.config.list_logical_devices("CPU")
    if name == "auto":
        if len(gpus) > 1:
            return tf.distribute.MirroredStrategy(), "mirrored", f"auto: {len(gpus)} GPUs found"
        if len(gpus) == 1:
            return tf.distribute.OneDeviceStrategy(gpus[0].name), "one_device", "auto: one GPU found"
        return tf.distribute.get_strategy(), "default", "auto: no GPU found, training on the CPU"
    if name == "default":
        return tf.distribute.get_strategy(), "default", "set in runtime.strategy"
    if name == "one_device":
        device = (gpus or cpus)[0].name
        return tf.distribute.OneDeviceStrategy(device), "one_device", f"set in runtime.strategy ({device})"
    if name == "mirrored":
        devices = [d.name for d in gpus] or [d.name for d in cpus]
        return (
            tf.distribute.MirroredStrategy(devices),
            "mirrored",
            f"set in runtime.strategy ({len(devices)} devices)",
        )
    raise ConfigError(
        f"`runtime.strategy` received {name!r}; expected one of: auto, default, one_device, mirrored"
    )


def _pick_precision(setting: str) -> str:
    if setting == "off":
        return "float32"
    if setting == "float16":
        return "mixed_float16"
    if setting == "bfloat16":
        return "mixed_bfloat16"
    # auto: mixed float16 only where tensor cores make it pay (compute capability 7.0+); on CPU it is slower.
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        if details.get("compute_capability", (0, 0)) >= (7, 0):
            return "mixed_float16"
    return "float32"


def setup_runtime(cfg: RuntimeConfig, seed: int, batch_size: int) -> Runtime:
    """Seed everything, choose precision and strategy, and check the batch divides over the replicas.

    Raises:
        ConfigError: the global batch does not divide by the number of replicas.
    """
    _split_cpu()
    name: str = cfg.strategy
    if name == "auto" and os.environ.get("TF_CONFIG"):
        name = "multi_worker"
    workers, worker_index, is_chief = 1, 0, True
    multi: tf.distribute.Strategy | None = None
    if name == "multi_worker":
        # Must exist before any other TF op runs: it sets up the collectives of this process.
        multi = tf.distribute.MultiWorkerMirroredStrategy()
        resolver = multi.cluster_resolver
        spec = resolver.cluster_spec().as_dict()
        workers = sum(len(v) for k, v in spec.items() if k in ("chief", "worker")) or 1
        worker_index = int(resolver.task_id or 0)
        is_chief = resolver.task_type == "chief" or (
            resolver.task_type in (None, "worker") and worker_index == 0 and "chief" not in spec
        )
    keras.utils.set_random_seed(seed)
    if cfg.deterministic:
        tf.config.experimental.enable_op_determinism()
    precision = _pick_precision(cfg.mixed_precision)
    keras.mixed_precision.set_global_policy(precision)
    if multi is not None:
        why = "TF_CONFIG is set" if cfg.strategy == "auto" else "set in runtime.strategy"
        strategy, reason = multi, f"{why}: worker {worker_index} of {workers}{' (chief)' if is_chief else ''}"
    else:
        strategy, name, reason = _pick_strategy(name)
    replicas = int(strategy.num_replicas_in_sync)
    if batch_size % replicas:
        raise ConfigError(
            f"`data.batch_size` must divide by the number of replicas ({replicas}). Received: {batch_size}. "
            f"Set it to a multiple of {replicas}, e.g. {max(replicas, batch_size - batch_size % replicas)}."
        )
    try:
        devices = list(strategy.extended.worker_devices)
    except RuntimeError:  # the default strategy has no device list: it runs where TF places ops
        devices = [
            d.name
            for d in tf.config.list_logical_devices("GPU")[:1] or tf.config.list_logical_devices("CPU")[:1]
        ]
    log.info("strategy %s (%s), %d replica(s), precision %s", name, reason, replicas, precision)
    return Runtime(
        strategy, name, reason, replicas, precision, cfg.jit_compile, devices, workers, worker_index, is_chief
    )
