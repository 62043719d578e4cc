"""Runtime set-up: seeds, determinism, precision and the tf.distribute strategy (docs/architecture.md, "Strategies")."""

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


def _named_devices(wanted: list[str] | None, available: list[str]) -> list[str]:
    if not wanted:
        return available
    # "/job:localhost/replica:0/task:0/device:GPU:0", "/device:GPU:0" and "/gpu:0" all name one device
    short = {"/" + d.lower().split("device:")[-1].lstrip("/"): d for d in available}
    out = []
    for name in wanted:
        match = short.get("/" + name.lower().split("device:")[-1].lstrip("/"))
        if match is None:
            raise ConfigError(
                f"`runtime.devices` names {name!r}, which this machine does not have. "
                f"Available: {', '.join(sorted(short)) or 'none'}."
            )
        out.append(match)
    return out


def _pick_strategy(cfg: RuntimeConfig, name: str) -> tuple[tf.distribute.Strategy, str, str]:
    gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
    cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
    if name == "auto":
        if len(gpus) > 1:
            return tf.distribute.MirroredStrategy(gpus), "mirrored", f"auto: {len(gpus)} GPUs found"
        if len(gpus) == 1:
            return tf.distribute.OneDeviceStrategy(gpus[0]), "one_device", "auto: one GPU found"
        return tf.distribute.get_strategy(), "default", "auto: no GPU found, training on the CPU"
    if name == "default":
        return tf.distribute.get_strategy(), "default", "set in runtime.strategy"
    if name == "one_device":
        device = _named_devices(cfg.devices, gpus or cpus)[0]
        return tf.distribute.OneDeviceStrategy(device), "one_device", f"set in runtime.strategy ({device})"
    if name == "mirrored":
        devices = _named_devices(cfg.devices, gpus or cpus)
        return (
            tf.distribute.MirroredStrategy(devices),
            "mirrored",
            f"set in runtime.strategy ({len(devices)} devices)",
        )
    if name == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=cfg.tpu or "")
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, RuntimeError, tf.errors.OpError) as exc:
            first = (str(exc).splitlines() or [type(exc).__name__])[0][:120]
            raise ConfigError(
                f"`runtime.strategy` is tpu but no TPU was found ({first}). "
                "Set runtime.tpu to its name or address, or use strategy auto."
            ) from None
        return tf.distribute.TPUStrategy(resolver), "tpu", f"set in runtime.strategy ({cfg.tpu or 'local'})"
    raise ConfigError(
        f"`runtime.strategy` received {name!r}; expected one of: auto, default, one_device, mirrored, "
        "multi_worker, tpu"
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


def setup_runtime(cfg: RuntimeConfig, seed: int, batch_size: int, *, allow_cluster: bool = True) -> Runtime:
    """Seed everything, choose precision and strategy, and check the batch divides over the replicas.

    Raises:
        ConfigError: the global batch does not divide by the number of replicas.
    """
    _split_cpu()
    name: str = cfg.strategy
    if name == "auto" and os.environ.get("TF_CONFIG") and allow_cluster:
        name = "multi_worker"
    workers, worker_index, is_chief = 1, 0, True
    multi: tf.distribute.Strategy | None = None
    if name == "multi_worker":
        # Must exist before any other TF op runs: it sets up the collectives of this process.
        implementation = {
            "auto": tf.distribute.experimental.CommunicationImplementation.AUTO,
            "ring": tf.distribute.experimental.CommunicationImplementation.RING,
            "nccl": tf.distribute.experimental.CommunicationImplementation.NCCL,
        }[cfg.collective]
        multi = tf.distribute.MultiWorkerMirroredStrategy(
            communication_options=tf.distribute.experimental.CommunicationOptions(
                implementation=implementation
            )
        )
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
        strategy, name, reason = _pick_strategy(cfg, name)
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
