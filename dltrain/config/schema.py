"""The experiment config's schema: strict, frozen pydantic models, one section per family.

Every family (data, model, optimizer, schedule) picks its variant with a ``kind`` discriminator (``KINDS``);
unknown keys are errors. Reading and validating a file is ``dltrain.config.loading``; turning pydantic's
errors into one-line messages is ``dltrain.config.problems``. Light zone (docs/architecture.md).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    model_validator,
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


Activation = Literal["relu", "gelu", "elu", "selu", "swish", "tanh", "sigmoid", "leaky_relu"]
Fraction = Annotated[float, Field(ge=0.0, lt=1.0)]
PositiveInt = Annotated[int, Field(gt=0)]

# ---------------------------------------------------------------------------------------------- data


Task = Literal["auto", "classification", "binary", "regression"]


class _DataBase(_Strict):
    batch_size: PositiveInt = Field(128, description="Global batch size, split evenly over the replicas.")
    validation_split: Fraction = Field(
        0.1, description="Fraction of the training split held out for validation, drawn with the seed."
    )
    shuffle: bool = Field(True, description="Shuffle the training split every epoch (seeded).")
    task: Task = Field(
        "auto",
        description="classification (softmax over classes), binary (one sigmoid output, two classes) or "
        "regression (linear outputs, MSE loss, MAE metric); auto infers it from the labels.",
    )


class MnistData(_DataBase):
    """MNIST handwritten digits through keras.datasets (cached in ~/.keras/datasets)."""

    kind: Literal["mnist"]
    path: Path | None = Field(None, description="mnist.npz, or a folder with the four IDX files.")


class FashionMnistData(_DataBase):
    """Fashion-MNIST: data.path, then /usr/share/datasets/fashion-mnist, then the Keras cache, then download."""

    kind: Literal["fashion_mnist"]
    path: Path | None = Field(None, description="A folder with the four (optionally gzipped) IDX files.")


class DigitsData(_DataBase):
    """scikit-learn's bundled 8x8 handwritten digits (1797 images, offline)."""

    kind: Literal["digits"]
    test_split: Annotated[float, Field(gt=0.0, lt=1.0)] = Field(
        0.2, description="Fraction held out as the test split, drawn with the seed."
    )


class IdxData(_DataBase):
    """Images and labels in IDX files (the MNIST file format), optionally gzipped."""

    kind: Literal["idx"]
    train_images: Path
    train_labels: Path
    test_images: Path | None = None
    test_labels: Path | None = None


class NpzData(_DataBase):
    """A .npz file with x_train, y_train and optionally x_val, y_val, x_test, y_test."""

    kind: Literal["npz"]
    path: Path


class Augment(_Strict):
    """Random changes to training images (Keras preprocessing layers; never applied to validation or test)."""

    flip: Literal["none", "horizontal", "vertical", "both"] = "none"
    rotation: Annotated[float, Field(ge=0.0, le=0.5)] = Field(
        0.0, description="Largest rotation as a fraction of a full turn (0.1 = 36 degrees)."
    )
    zoom: Fraction = Field(0.0, description="Largest zoom in or out, as a fraction of the size.")
    translation: Fraction = Field(0.0, description="Largest shift, as a fraction of height and width.")
    contrast: Fraction = Field(0.0, description="Largest contrast change factor.")


class ImageFolderData(_DataBase):
    """Images in class folders: root/train/<class>/*.png (valid/ or val/ or validation/, test/), or
    root/<class>/*.png with validation_split and test_split. Streamed from disk, decoded per batch."""

    kind: Literal["image_folder"]
    path: Path = Field(description="The root folder.")
    image_size: Annotated[list[PositiveInt], Field(min_length=2, max_length=2)] = Field(
        default_factory=lambda: [64, 64], description="[height, width] every image is resized to."
    )
    color_mode: Literal["rgb", "grayscale"] = "rgb"
    test_split: Fraction = Field(
        0.0, description="Single-folder layout: fraction held out as the test split, drawn with the seed."
    )
    cache: bool = Field(
        False, description="Decode every image once and keep the pixels in memory (small folders only)."
    )
    bad_images: Literal["error", "skip"] = Field(
        "error",
        description="A file that cannot be decoded: stop (exit 3, naming it) or skip it with a count.",
    )
    augment: Augment = Field(default_factory=Augment)


class CsvData(_DataBase):
    """A table: one row an example, a label column, feature columns (numeric or categorical)."""

    kind: Literal["csv"]
    path: Path | None = Field(None, description="One CSV; validation (and test) carved with the seed.")
    train: Path | None = Field(None, description="The training CSV, instead of path.")
    validation: Path | None = None
    test: Path | None = None
    label: str = Field(description="The column to predict.")
    features: list[str] | None = Field(None, description="Feature columns; default: every other column.")
    categorical: list[str] | None = Field(
        None, description="Columns treated as categories; default: the feature columns that are not numeric."
    )
    categorical_encoding: Literal["one_hot", "embedding"] = "one_hot"
    embedding_dim: PositiveInt = Field(8, description="Width of each categorical embedding.")
    test_split: Fraction = Field(0.0, description="With path: fraction held out as the test split.")
    delimiter: str = Field(",", min_length=1, max_length=1)


class TimeseriesCsvData(_DataBase):
    """A series in a CSV (rows in time order): windows of past values predict the target ahead."""

    kind: Literal["timeseries_csv"]
    path: Path
    target: str = Field(description="The column to forecast.")
    columns: list[str] | None = Field(
        None, description="Input columns; default: every numeric column (the target included)."
    )
    time_column: str | None = Field(None, description="A date/time column to keep out of the inputs.")
    window: PositiveInt = Field(24, description="Past steps in one input window.")
    horizon: PositiveInt = Field(1, description="Steps ahead predicted (1 = the next value).")
    stride: PositiveInt = Field(1, description="Steps between the starts of consecutive windows.")
    validation_split: Fraction = Field(
        0.15, description="The last part of the series before the test part (chronological, never shuffled)."
    )
    test_split: Fraction = Field(0.15, description="The last part of the series (chronological).")
    delimiter: str = Field(",", min_length=1, max_length=1)


class TextFolderData(_DataBase):
    """Text files in class folders: root/<split>/<class>/*.txt (or root/<class>/*.txt with splits carved)."""

    kind: Literal["text_folder"]
    path: Path
    max_tokens: PositiveInt = Field(20000, description="Vocabulary size (TextVectorization, fit on train).")
    sequence_length: PositiveInt = Field(200, description="Tokens per example (padded or cut).")
    embedding_dim: PositiveInt = Field(64, description="Width of the token embedding.")
    test_split: Fraction = Field(0.0, description="Single-folder layout: fraction held out as test.")
    encoding: str = "utf-8"


DataConfig = Annotated[
    MnistData
    | FashionMnistData
    | DigitsData
    | IdxData
    | NpzData
    | ImageFolderData
    | CsvData
    | TimeseriesCsvData
    | TextFolderData,
    Field(discriminator="kind"),
]

# --------------------------------------------------------------------------------------------- model


def _weights(value: Any) -> str:
    if not isinstance(value, str | Path) or not str(value).strip():
        raise ValueError("must be imagenet, none, a run directory or a .weights.h5/.h5 file")
    return str(value)


Weights = Annotated[str, BeforeValidator(_weights)]


class DenseModel(_Strict):
    """A multilayer perceptron; no hidden layer is softmax regression."""

    kind: Literal["dense"]
    units: list[PositiveInt] = Field(default_factory=lambda: [128], description="Hidden layer widths.")
    activation: Activation = "relu"
    dropout: Fraction = 0.0
    batch_norm: bool = False


class CnnModel(_Strict):
    """Conv blocks (one per entry of ``filters``), then a dense head."""

    kind: Literal["cnn"]
    filters: list[PositiveInt] = Field(default_factory=lambda: [32, 64], min_length=1)
    kernel_size: PositiveInt = 3
    convs_per_block: PositiveInt = 1
    pool: Literal["max", "avg", "none"] = "max"
    batch_norm: bool = False
    residual: bool = Field(False, description="Add a skip connection around each conv block.")
    activation: Activation = "relu"
    dropout: Fraction = Field(0.0, description="Dropout before the head.")
    global_pool: bool = Field(False, description="Global average pooling instead of flattening.")
    dense: list[PositiveInt] = Field(default_factory=list, description="Hidden widths of the head.")
    weights: Weights = Field(
        "none",
        description="none (random), a dltrain RUN_DIR (its backbone: every layer before the global pooling or "
        "flatten) or a .weights.h5/.h5 file of the backbone.",
    )


class RnnModel(_Strict):
    """A recurrent network; an image is read row by row (rows are time steps)."""

    kind: Literal["rnn"]
    cell: Literal["lstm", "gru", "simple"] = "lstm"
    units: list[PositiveInt] = Field(default_factory=lambda: [128], min_length=1)
    bidirectional: bool = False
    dropout: Fraction = 0.0
    dense: list[PositiveInt] = Field(default_factory=list)


# The backbones of `model.kind: pretrained` (keras.applications) and their native (ImageNet) input sizes.
ARCHS: dict[str, int] = {
    "ResNet50": 224,
    "ResNet50V2": 224,
    "MobileNetV2": 224,
    "MobileNetV3Small": 224,
    "MobileNetV3Large": 224,
    "EfficientNetB0": 224,
    "EfficientNetB1": 240,
    "EfficientNetB2": 260,
    "EfficientNetB3": 300,
    "EfficientNetV2B0": 224,
    "ConvNeXtTiny": 224,
    "DenseNet121": 224,
}


class PretrainedModel(_Strict):
    """A keras.applications backbone (its own input preprocessing built in) with a new head."""

    kind: Literal["pretrained"]
    arch: Literal[tuple(ARCHS)]  # type: ignore[valid-type]
    weights: Weights = Field(
        "imagenet",
        description="imagenet (Keras's download, cached in $KERAS_HOME/models), none (random), a dltrain "
        "RUN_DIR (its backbone) or a .weights.h5/.h5 file of the backbone (include_top=False).",
    )
    image_size: Annotated[list[PositiveInt], Field(min_length=2, max_length=2)] | None = Field(
        None,
        description="[height, width] the backbone sees (images are resized inside the model); default: the "
        "arch's native size (224; EfficientNetB1-B3: 240, 260, 300).",
    )
    pool: Literal["avg", "max"] = Field("avg", description="Global pooling of the backbone's features.")
    dropout: Fraction = Field(0.0, description="Dropout before each dense layer of the head.")
    dense: list[PositiveInt] = Field(default_factory=list, description="Hidden widths of the head.")
    activation: Activation = "relu"


ModelConfig = Annotated[DenseModel | CnnModel | RnnModel | PretrainedModel, Field(discriminator="kind")]

# ----------------------------------------------------------------------------------------- optimizer


def _learning_rate(value: Any) -> float | str:
    if value == "auto":
        return "auto"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a positive number or 'auto'")
    if not value > 0 or value != value or value == float("inf"):
        raise ValueError("must be a positive, finite number or 'auto'")
    return float(value)


LearningRate = Annotated[float | str, BeforeValidator(_learning_rate)]


class _OptimizerBase(_Strict):
    learning_rate: LearningRate = Field(
        1e-3, description="Peak learning rate, or 'auto' to run lr-find first and use its suggestion."
    )
    weight_decay: Annotated[float, Field(ge=0.0)] = 0.0
    clipnorm: Annotated[float, Field(gt=0.0)] | None = Field(
        None, description="Clip the global gradient norm."
    )
    backbone_lr_factor: Annotated[float, Field(gt=0.0, le=1.0)] = Field(
        1.0,
        description="Transfer learning: the backbone's learning rate is this times the head's (a discriminative "
        "rate, e.g. 0.1); the backbone has its own optimizer and state.",
    )
    lr_scaling: Literal["none", "linear", "sqrt"] = Field(
        "none",
        description="Scale learning_rate by the number of replicas (linear) or its square root (sqrt): "
        "learning_rate is then the rate for one replica. Not applied to a rate lr-find found.",
    )


class SgdOptimizer(_OptimizerBase):
    kind: Literal["sgd"]
    momentum: Fraction = 0.0
    nesterov: bool = False


class AdamOptimizer(_OptimizerBase):
    kind: Literal["adam"]
    beta_1: Fraction = 0.9
    beta_2: Fraction = 0.999
    epsilon: Annotated[float, Field(gt=0.0)] = 1e-7


class AdamWOptimizer(AdamOptimizer):
    kind: Literal["adamw"]  # type: ignore[assignment]
    weight_decay: Annotated[float, Field(ge=0.0)] = 0.004


class RmspropOptimizer(_OptimizerBase):
    kind: Literal["rmsprop"]
    rho: Fraction = 0.9
    momentum: Fraction = 0.0


OptimizerConfig = Annotated[
    SgdOptimizer | AdamOptimizer | AdamWOptimizer | RmspropOptimizer, Field(discriminator="kind")
]

# ------------------------------------------------------------------------------------------ schedule


class ConstantSchedule(_Strict):
    kind: Literal["constant"]


class StepSchedule(_Strict):
    """Multiply the learning rate by ``gamma`` every ``step_epochs`` epochs."""

    kind: Literal["step"]
    step_epochs: PositiveInt = 10
    gamma: Annotated[float, Field(gt=0.0, le=1.0)] = 0.1


class CosineSchedule(_Strict):
    """Linear warmup, then cosine decay to ``min_lr_fraction`` of the peak."""

    kind: Literal["cosine"]
    warmup_epochs: Annotated[float, Field(ge=0.0)] = 0.0
    min_lr_fraction: Fraction = 0.0


class OneCycleSchedule(_Strict):
    """fast.ai's fit_one_cycle: cosine up from lr/div_factor to lr, then down to lr/final_div_factor."""

    kind: Literal["one_cycle"]
    warmup_fraction: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.25
    div_factor: Annotated[float, Field(ge=1.0)] = 25.0
    final_div_factor: Annotated[float, Field(ge=1.0)] = 1e5


ScheduleConfig = Annotated[
    ConstantSchedule | StepSchedule | CosineSchedule | OneCycleSchedule, Field(discriminator="kind")
]

# ------------------------------------------------------------------------------------ train, runtime

Monitor = Literal["val_loss", "val_accuracy", "val_mae", "loss", "accuracy", "mae"]


class EarlyStopping(_Strict):
    monitor: Monitor = "val_loss"
    patience: PositiveInt = 3
    min_delta: Annotated[float, Field(ge=0.0)] = 0.0


_CALLBACK_CLASS = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$")


def _callback(value: Any) -> dict[str, Any]:
    """``{class: "package.module:ClassName", <keyword arguments>}``: checked here, imported only at fit time."""
    if not isinstance(value, dict):
        raise ValueError('must be a mapping like {class: "package.module:ClassName", ...keyword arguments}')
    name = value.get("class")
    if not isinstance(name, str) or not _CALLBACK_CLASS.match(name):
        raise ValueError(
            'needs `class: "package.module:ClassName"` (a module path, a colon, a class name), '
            'e.g. "keras.callbacks:CSVLogger"'
        )
    return value


CallbackSpec = Annotated[dict[str, Any], BeforeValidator(_callback)]


class TrainConfig(_Strict):
    epochs: PositiveInt = 10
    monitor: Monitor = Field(
        "val_loss", description="Metric that picks the best epoch (exported model.keras)."
    )
    early_stopping: EarlyStopping | None = None
    steps_per_execution: PositiveInt = Field(
        16,
        description="Training steps per tf.function call; more cuts the host-side work per step (16 saved "
        "~6% CPU per Fashion-MNIST epoch against 1). A chunk never crosses an epoch end, a step-checkpoint "
        "boundary or a stop request by more than its length.",
    )
    keep_checkpoints: PositiveInt = Field(3, description="How many recent checkpoints to keep.")
    checkpoint_every_steps: PositiveInt | None = Field(
        None,
        description="Also checkpoint every N steps inside an epoch, so a killed run resumes at that step.",
    )
    callbacks: list[CallbackSpec] = Field(
        default_factory=list,
        description='Your own event handlers: {class: "package.module:ClassName", <its keyword arguments>}, a '
        "dltrain.train.events.Handler subclass or a Keras callback that works in a custom loop (CSVLogger, "
        "EarlyStopping, LambdaCallback, TerminateOnNaN, your keras.callbacks.Callback subclasses). Their state is "
        "not restored on --resume.",
    )

    freeze_epochs: Annotated[int, Field(ge=0)] = Field(
        0,
        description="Transfer learning (fast.ai's fine_tune): first train the head this many epochs with the "
        "backbone frozen, then unfreeze everything for train.epochs. Each phase has its own schedule.",
    )
    frozen_batch_norm: Literal["inference", "train"] = Field(
        "inference",
        description="While the backbone is frozen, its batch norm layers run in inference mode with fixed "
        "statistics (Keras's guide), or train (statistics and scale/offset, fast.ai's train_bn).",
    )
    unfreeze_lr_factor: Annotated[float, Field(gt=0.0, le=1.0)] = Field(
        0.5,
        description="The unfrozen phase's peak learning rate is this times the frozen phase's (fast.ai: 0.5).",
    )


class RuntimeConfig(_Strict):
    strategy: Literal["auto", "default", "one_device", "mirrored", "multi_worker", "tpu"] = Field(
        "auto",
        description="auto: TF_CONFIG set -> multi_worker; several GPUs -> mirrored; one GPU -> one_device.",
    )
    devices: list[str] | None = Field(
        None,
        description="Devices for one_device / mirrored, e.g. ['/gpu:0', '/gpu:1']; default: all GPUs, else CPU.",
    )
    collective: Literal["auto", "ring", "nccl"] = Field(
        "auto", description="multi_worker all-reduce: auto, ring (gRPC, CPU) or nccl (GPU)."
    )
    tpu: str | None = Field(
        None, description="strategy tpu: the TPU name or grpc:// address (default: local)."
    )
    mixed_precision: Literal["auto", "off", "float16", "bfloat16"] = Field(
        "auto",
        description="auto: float16 on GPUs with compute capability >= 7.0, bfloat16 on a CPU with native bf16 "
        "(avx512_bf16 / amx_bf16) unless the model is recurrent, else off; resolved when the run starts and "
        "written into its config.yaml.",
    )
    jit_compile: bool = Field(False, description="XLA; off by default (made a CNN 4x slower on CPU).")
    deterministic: bool = Field(False, description="Enable TF op determinism (slower, bit-reproducible).")


class LrFindConfig(_Strict):
    start_lr: Annotated[float, Field(gt=0.0)] = 1e-7
    end_lr: Annotated[float, Field(gt=0.0)] = 10.0
    num_steps: Annotated[int, Field(ge=10)] | Literal["auto"] = Field(
        "auto",
        description="Steps in the sweep; auto: 15% of an epoch, at least 60 and at most 100 (fast.ai's 100).",
    )
    beta: Fraction = Field(
        0.98,
        description="Loss smoothing (EMA) for a 100-step sweep; other lengths scale it to smooth over the same "
        "share of the sweep.",
    )
    diverge_factor: Annotated[float, Field(gt=1.0)] = 4.0
    rule: Literal["valley", "steep", "minimum"] = "valley"
    unfrozen: bool = Field(
        False,
        description="With train.freeze_epochs: sweep the unfrozen model (head and backbone, the backbone at "
        "optimizer.backbone_lr_factor times the rate) instead of the frozen one.",
    )

    @model_validator(mode="after")
    def _range(self) -> LrFindConfig:
        if self.end_lr <= self.start_lr:
            raise ValueError(
                f"end_lr ({self.end_lr}) must be larger than start_lr ({self.start_lr}); the sweep goes up"
            )
        return self


IntRange = Annotated[list[int], Field(min_length=2, max_length=2)]


class SweepParam(_Strict):
    """One search dimension: exactly one of loguniform / uniform / int / choice (see ``dltrain sweep``)."""

    loguniform: Annotated[list[float], Field(min_length=2, max_length=2)] | None = Field(
        None, description="[low, high], sampled on a log scale (low > 0)."
    )
    uniform: Annotated[list[float], Field(min_length=2, max_length=2)] | None = Field(
        None, description="[low, high], sampled uniformly."
    )
    int: IntRange | None = Field(None, description="[low, high], integers, both ends included.")
    choice: Annotated[list[Any], Field(min_length=1)] | None = Field(
        None, description="The values to choose from (any YAML values, lists included)."
    )
    step: Annotated[float, Field(gt=0)] | None = Field(None, description="Step of a uniform or int range.")

    @model_validator(mode="after")
    def _one_kind(self) -> SweepParam:
        given = [k for k in ("loguniform", "uniform", "int", "choice") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of loguniform: [low, high], uniform: [low, high], int: [low, high] or "
                f"choice: [values...] (got {', '.join(given) or 'none'})"
            )
        bounds = self.loguniform or self.uniform or self.int
        if bounds is not None and not bounds[0] < bounds[1]:
            raise ValueError(f"the range [{bounds[0]}, {bounds[1]}] must go up: low < high")
        if self.loguniform is not None and self.loguniform[0] <= 0:
            raise ValueError(f"loguniform needs low > 0 (got {self.loguniform[0]}); use uniform for 0")
        return self


class SweepConfig(_Strict):
    """``dltrain sweep``: a hyper-parameter search on Optuna; ``dltrain fit`` ignores this section."""

    trials: PositiveInt = Field(20, description="How many trials to run (over every sweep process).")
    metric: Monitor | None = Field(None, description="The metric to optimise; default: train.monitor.")
    direction: Literal["auto", "minimize", "maximize"] = Field(
        "auto", description="auto: minimize losses and errors, maximize accuracy."
    )
    sampler: Literal["tpe", "random", "grid"] = Field(
        "tpe", description="grid: every combination (int, choice)."
    )
    pruner: Literal["median", "none"] = Field(
        "median",
        description="median: stop a trial whose epoch metric is worse than the median of earlier trials.",
    )
    startup_trials: Annotated[int, Field(ge=0)] = Field(
        5, description="Trials that finish before the median pruner prunes anything."
    )
    warmup_epochs: Annotated[int, Field(ge=0)] = Field(0, description="Epochs of each trial never pruned.")
    params: dict[str, SweepParam] = Field(
        default_factory=dict,
        description="Config key (dotted) -> its search range, e.g. optimizer.learning_rate.",
    )


class TrackingConfig(_Strict):
    """Send params, per-epoch metrics, eval metrics and artefacts to an experiment tracker (off by default)."""

    kind: Literal["mlflow"] = "mlflow"
    uri: str | None = Field(
        None, description="Tracking URI: default sqlite:///<runs folder>/mlflow.db; or http://host:5000."
    )
    experiment: str | None = Field(None, description="Experiment name; default: the config's name.")
    artifacts: bool = Field(True, description="Upload model.keras and the plots at the end.")
    timeout: Annotated[float, Field(gt=0)] = Field(
        5.0,
        description="Seconds a tracking call may take before it is given up (training never waits longer).",
    )


class Config(_Strict):
    """A whole experiment."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=80)
    seed: Annotated[int, Field(ge=0, le=2**32 - 1)] = Field(
        42,
        description="Seeds weights, shuffling and splits: 0 to 2**32 - 1 (TensorFlow's and NumPy's range).",
    )
    data: DataConfig
    model: ModelConfig
    optimizer: OptimizerConfig = Field(default_factory=lambda: AdamOptimizer(kind="adam"))
    schedule: ScheduleConfig = Field(default_factory=lambda: ConstantSchedule(kind="constant"))
    train: TrainConfig = Field(default_factory=TrainConfig)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    lr_find: LrFindConfig = Field(default_factory=LrFindConfig)
    sweep: SweepConfig | None = Field(None, description="dltrain sweep's search space (ignored by fit).")
    tracking: TrackingConfig | None = Field(
        None, description="Experiment tracking (MLflow); off when absent."
    )

    @model_validator(mode="before")
    @classmethod
    def _fine_tune_schedule(cls, data: Any) -> Any:
        """With train.freeze_epochs and no schedule given, each phase is a one-cycle (fast.ai's fine_tune)."""
        if isinstance(data, dict) and "schedule" not in data:
            train = data.get("train")
            if (
                isinstance(train, dict)
                and isinstance(train.get("freeze_epochs"), int)
                and train["freeze_epochs"] > 0
            ):
                data = {**data, "schedule": {"kind": "one_cycle"}}
        return data


def _kinds(annotation: Any) -> dict[str, type[BaseModel]]:
    """Map each ``kind`` value of a discriminated union to its model class."""
    union = annotation.__origin__ if hasattr(annotation, "__metadata__") else annotation
    out: dict[str, type[BaseModel]] = {}
    for cls in union.__args__:
        kind = cls.model_fields["kind"].annotation.__args__[0]
        out[kind] = cls
    return out


KINDS: dict[str, dict[str, type[BaseModel]]] = {
    "data": _kinds(DataConfig),
    "model": _kinds(ModelConfig),
    "optimizer": _kinds(OptimizerConfig),
    "schedule": _kinds(ScheduleConfig),
}

__all__ = [
    "ARCHS",
    "SweepConfig",
    "SweepParam",
    "TrackingConfig",
    "Activation",
    "AdamOptimizer",
    "AdamWOptimizer",
    "Augment",
    "CnnModel",
    "Config",
    "ConstantSchedule",
    "CosineSchedule",
    "CsvData",
    "DataConfig",
    "DenseModel",
    "DigitsData",
    "EarlyStopping",
    "FashionMnistData",
    "IdxData",
    "ImageFolderData",
    "KINDS",
    "LrFindConfig",
    "MnistData",
    "ModelConfig",
    "Monitor",
    "NpzData",
    "OneCycleSchedule",
    "OptimizerConfig",
    "PretrainedModel",
    "RmspropOptimizer",
    "RnnModel",
    "RuntimeConfig",
    "ScheduleConfig",
    "SgdOptimizer",
    "StepSchedule",
    "Task",
    "TextFolderData",
    "TimeseriesCsvData",
    "TrainConfig",
]
