"""Runtime set-up: seeds, determinism, precision and the tf.distribute strategy (docs/architecture.md, "Strategies")."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from dltrain.config import Config, RuntimeConfig
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
    # The `runtime.mixed_precision` value in effect (never "auto": written into the run's config.yaml) and why.
    precision_setting: str = "off"
    precision_reason: str = "set in runtime.mixed_precision"

    def describe(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy_name,
            "reason": self.reason,
            "replicas": self.replicas,
            "devices": self.devices,
            "precision": self.precision,
            "precision_reason": self.precision_reason,
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


# Keras policy of each `runtime.mixed_precision` value.
POLICIES = {"off": "float32", "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}
SETTINGS = {policy: setting for setting, policy in POLICIES.items()}
CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_bf16_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> list[str]:
    """The native-bfloat16 instruction sets this CPU lists (Linux; elsewhere none are known)."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return []
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.partition(":")[2].split())
            return [flag for flag in CPU_BF16_FLAGS if flag in flags]
    return []


# Model kinds whose layers are recurrent: `auto` keeps them in float32 on a CPU (auto_precision).
RECURRENT_KINDS = frozenset({"rnn"})


def auto_precision(model_kind: str = "", cpuinfo: Path = Path("/proc/cpuinfo")) -> tuple[str, str]:
    """``auto``: (setting, reason). Training runs on the GPUs when there are any, else on the CPU.

    On a CPU, bfloat16 pays for convolutions and large matrix products (AMX / AVX512_BF16 kernels), but not for
    recurrent layers: their step-by-step cells ran slower in bfloat16 and lost accuracy (bench/RESULTS.md
    section 7: books_rnn 8.7 points, digits_rnn 2.0), so a recurrent model stays in float32 there.
    """
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        # mixed float16 pays where tensor cores are (compute capability 7.0+); older GPUs run it slower.
        capabilities = [tf.config.experimental.get_device_details(g).get("compute_capability") for g in gpus]
        if all(cc is not None and tuple(cc) >= (7, 0) for cc in capabilities):
            lowest = min(tuple(cc) for cc in capabilities if cc is not None)
            return "float16", f"auto: GPU compute capability {lowest[0]}.{lowest[1]} >= 7.0 (tensor cores)"
        return "off", "auto: GPU without tensor cores (compute capability < 7.0)"
    flags = cpu_bf16_flags(cpuinfo)
    if flags and model_kind in RECURRENT_KINDS:
        return "off", (
            f"auto: the CPU has native bfloat16 ({', '.join(flags)}), but recurrent layers train slower and "
            "less accurately in it; float32"
        )
    if flags:
        return "bfloat16", f"auto: the CPU has native bfloat16 ({', '.join(flags)})"
    return "off", "auto: no GPU and no native bfloat16 on the CPU (avx512_bf16 / amx_bf16)"


def _agreed(multi: tf.distribute.Strategy, setting: str, reason: str) -> tuple[str, str]:
    """Multi-worker ``auto``: every worker must train in the same precision; the lowest common one wins."""
    local = tf.constant([float(setting == "float16"), float(setting == "bfloat16")])
    total = multi.reduce(tf.distribute.ReduceOp.SUM, multi.run(lambda: tf.identity(local)), axis=None).numpy()
    replicas = multi.num_replicas_in_sync
    agreed = "float16" if total[0] == replicas else "bfloat16" if total[1] == replicas else "off"
    if agreed != setting:
        return agreed, f"auto: not every worker supports {setting} ({reason} here)"
    return setting, reason


def pinned_config(cfg: Config, runtime: Runtime) -> Config:
    """``cfg`` with ``runtime.mixed_precision: auto`` replaced by what it resolved to, for the run's config.yaml:
    a ``--resume`` (on another machine, too) continues in the precision the run started with."""
    if cfg.runtime.mixed_precision != "auto":
        return cfg
    return cfg.model_copy(
        update={"runtime": cfg.runtime.model_copy(update={"mixed_precision": runtime.precision_setting})}
    )


def setup_runtime(
    cfg: RuntimeConfig, seed: int, batch_size: int, *, allow_cluster: bool = True, model_kind: str = ""
) -> Runtime:
    """Seed everything, choose precision and strategy, and check the batch divides over the replicas.

    ``model_kind``: the config's ``model.kind``; ``mixed_precision: auto`` keeps a recurrent one in float32 on a
    CPU.

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
    setting: str = cfg.mixed_precision
    precision_reason = "set in runtime.mixed_precision"
    if setting == "auto":
        setting, precision_reason = auto_precision(model_kind)
        if multi is not None:
            setting, precision_reason = _agreed(multi, setting, precision_reason)
    precision = POLICIES[setting]
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
    log.info("strategy %s (%s), %d replica(s)", name, reason, replicas)
    log.info("precision %s (%s)", precision, precision_reason)
    return Runtime(
        strategy,
        name,
        reason,
        replicas,
        precision,
        cfg.jit_compile,
        devices,
        workers,
        worker_index,
        is_chief,
        setting,
        precision_reason,
    )
