"""``pretrained``: a keras.applications backbone, its own input preprocessing built in, and a new head.

The model takes raw stored pixels like every dltrain model (``model.keras`` and ``predict`` need no
``preprocess_input``): the input stem rescales to [0, 1] (and augments), the pixels go back to the 0-255 range
the applications expect, grayscale is widened to three channels, images are resized to ``image_size``, and each
arch's preprocessing is built from built-in layers (no Lambda, so ``load_model(safe_mode=True)`` accepts it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from dltrain.config.schema import ARCHS, PretrainedModel
from dltrain.errors import ConfigError
from dltrain.models.common import MODELS, activation_layer, dropout_layer, input_stem, model_name
from dltrain.models.transfer import BACKBONE_NAME, imagenet_backbone, load_backbone_weights

_APPS: dict[str, Callable[..., keras.Model]] = {
    "ResNet50": keras.applications.ResNet50,
    "ResNet50V2": keras.applications.ResNet50V2,
    "MobileNetV2": keras.applications.MobileNetV2,
    "MobileNetV3Small": keras.applications.MobileNetV3Small,
    "MobileNetV3Large": keras.applications.MobileNetV3Large,
    "EfficientNetB0": keras.applications.EfficientNetB0,
    "EfficientNetB1": keras.applications.EfficientNetB1,
    "EfficientNetB2": keras.applications.EfficientNetB2,
    "EfficientNetB3": keras.applications.EfficientNetB3,
    "EfficientNetV2B0": keras.applications.EfficientNetV2B0,
    "ConvNeXtTiny": keras.applications.ConvNeXtTiny,
    "DenseNet121": keras.applications.DenseNet121,
}

# The preprocessing each arch expects on 0-255 RGB (keras.applications' preprocess_input modes), or None when
# the application builds it in itself (include_preprocessing / EfficientNet's own Rescaling + Normalization).
_CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68], np.float32)
_TORCH_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
_TORCH_STD = np.array([0.229, 0.224, 0.225], np.float32)
_MODE = {
    "ResNet50": "caffe",
    "ResNet50V2": "tf",
    "MobileNetV2": "tf",
    "DenseNet121": "torch",
}
_OWN_PREPROCESSING = {"MobileNetV3Small", "MobileNetV3Large", "EfficientNetV2B0", "ConvNeXtTiny"}
# The smallest input each family accepts (keras.applications' checks).
_MIN_SIZE = {"ResNet50": 32, "ResNet50V2": 32, "DenseNet121": 32, "MobileNetV2": 32}


def _preprocess(x: keras.KerasTensor, arch: str) -> keras.KerasTensor:
    mode = _MODE.get(arch)
    if mode == "tf":  # [-1, 1]
        return keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="preprocess")(x)
    if mode == "torch":  # [0, 1], then ImageNet's mean and std per channel
        x = keras.layers.Rescaling(1.0 / 255.0, name="preprocess_scale")(x)
        return keras.layers.Normalization(
            mean=_TORCH_MEAN, variance=np.square(_TORCH_STD), name="preprocess"
        )(x)
    if mode == "caffe":  # RGB -> BGR and ImageNet's BGR mean subtracted: one fixed per-pixel linear map
        dense = keras.layers.Dense(3, trainable=False, name="preprocess")
        out = dense(x)
        dense.set_weights([np.eye(3, dtype=np.float32)[::-1], -_CAFFE_MEAN_BGR])
        return out
    return x


def image_size(cfg: PretrainedModel) -> tuple[int, int]:
    if cfg.image_size is not None:
        return int(cfg.image_size[0]), int(cfg.image_size[1])
    native = ARCHS[cfg.arch]
    return native, native


def application(arch: str, size: tuple[int, int], weights: str | None) -> keras.Model:
    """The arch without its top, for 0-255 RGB inputs (after ``_preprocess``), named ``backbone``."""
    kwargs: dict[str, Any] = {"include_top": False, "weights": weights, "input_shape": (*size, 3)}
    if arch in _OWN_PREPROCESSING:
        kwargs["include_preprocessing"] = True
    model = _APPS[arch](**kwargs)
    model.name = BACKBONE_NAME
    return model


@MODELS.register("pretrained")
def build_pretrained(
    cfg: PretrainedModel,
    *,
    input_shape: tuple[int, ...],
    num_outputs: int,
    scale: float,
    stem: dict | None = None,
) -> keras.Model:
    if len(input_shape) not in (2, 3) or (len(input_shape) == 3 and input_shape[-1] not in (1, 3)):
        raise ConfigError(
            f"`model.kind` pretrained needs images (height, width[, 1 or 3 channels]); the data has shape "
            f"{input_shape}. Use model.kind dense or rnn for this data."
        )
    size = image_size(cfg)
    low = _MIN_SIZE.get(cfg.arch, 32)
    if min(size) < low:
        raise ConfigError(f"`model.image_size` {list(size)}: {cfg.arch} needs at least {low}x{low}.")
    inputs, x = input_stem(input_shape, scale, stem)  # [0, 1], augmented in training
    if len(input_shape) == 2:
        x = keras.layers.Reshape((*input_shape, 1))(x)
    x = keras.layers.Rescaling(255.0, name="to_0_255")(x)
    if x.shape[-1] == 1:
        x = keras.layers.Concatenate(name="gray_to_rgb")([x, x, x])
    if tuple(x.shape[1:3]) != size:
        x = keras.layers.Resizing(*size, name="resize_input")(x)
    x = _preprocess(x, cfg.arch)
    backbone = imagenet_backbone(cfg.arch, lambda w: application(cfg.arch, size, w), cfg.weights)
    x = backbone(x)
    x = (keras.layers.GlobalAveragePooling2D if cfg.pool == "avg" else keras.layers.GlobalMaxPooling2D)(
        name="head_pool"
    )(x)
    for width in cfg.dense:
        if cfg.dropout:
            x = dropout_layer(cfg.dropout)(x)
        x = keras.layers.Dense(width)(x)
        x = activation_layer(cfg.activation)(x)
    if cfg.dropout:
        x = dropout_layer(cfg.dropout)(x)
    logits = keras.layers.Dense(num_outputs, name="logits", dtype="float32")(x)
    model = keras.Model(inputs, logits, name=model_name(cfg))
    load_backbone_weights(model, cfg.weights)
    return model
