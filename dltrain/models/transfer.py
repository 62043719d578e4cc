"""A model's backbone and where its weights come from (``model.weights``), for transfer learning.

The backbone of a model is every weighted layer before its first global pooling or flatten layer, except the
input transforms (rescaling, standardisation, augmentation, an arch's fixed preprocessing): for ``pretrained``
that is the keras.applications model (one nested layer named ``backbone``), for ``cnn`` its conv blocks. The
rest (pooling, dropout, dense layers, the logits) is the head. The same rule reads an earlier run's
``model.keras``, so ``weights: RUN_DIR`` works for runs made before this module existed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import keras

from dltrain.errors import DataError

BACKBONE_NAME = "backbone"
_POOLS = (
    keras.layers.GlobalAveragePooling2D,
    keras.layers.GlobalMaxPooling2D,
    keras.layers.Flatten,
)


def _is_input_transform(layer: keras.layers.Layer) -> bool:
    module = type(layer).__module__
    return (
        layer.name.startswith("preprocess")
        or layer.name in ("standardize", "rescale", "to_0_255", "resize_input", "gray_to_rgb")
        or ".preprocessing." in module
        or isinstance(layer, keras.layers.Normalization | keras.layers.Rescaling)
    )


def backbone_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The weighted layers before the first global pooling / flatten, input transforms left out."""
    out: list[keras.layers.Layer] = []
    for layer in model.layers:
        if isinstance(layer, _POOLS):
            return out
        if layer.weights and not _is_input_transform(layer):
            out.append(layer)
    return []  # no pooling or flatten: no backbone (dense, rnn)


def leaf_layers(layers: list[keras.layers.Layer]) -> list[keras.layers.Layer]:
    """The layers inside nested models, flattened."""
    out: list[keras.layers.Layer] = []
    for layer in layers:
        if isinstance(layer, keras.Model):
            out.extend(leaf_layers(list(layer.layers)))
        else:
            out.append(layer)
    return out


def imagenet_backbone(arch: str, make: Callable[[str | None], keras.Model], weights: str) -> keras.Model:
    """``make(weights)`` with ImageNet weights through Keras's own download and cache, or random ones.

    Offline without the cached file: exit 3 naming the file and the folder Keras looks in.
    """
    if weights != "imagenet":
        return make(None)
    try:
        return make("imagenet")
    except Exception as exc:
        text = str(exc)
        if "URL fetch failure" not in text and "fetch failure" not in text.lower():
            raise
        origin = text.split("URL fetch failure on ", 1)[-1].split(": ", 1)[0].split(" ", 1)[0]
        name = origin.rsplit("/", 1)[-1]
        from keras.src.backend.config import keras_home

        cache = Path(keras_home()) / "models"
        raise DataError(
            f"`model.weights: imagenet`: {arch}'s ImageNet weights {name} are not in Keras's cache ({cache}) "
            f"and could not be downloaded ({text.split(' -- ')[-1][:120]}). Download {origin} on a machine with "
            f"network access and put it at {cache / name} (KERAS_HOME sets the folder), or use weights: none."
        ) from None


def load_backbone_weights(model: keras.Model, spec: str) -> None:
    """Fill ``model``'s backbone from ``spec``: a dltrain run directory, a .keras model, or a .weights.h5/.h5
    file of the backbone. ``imagenet`` and ``none`` are handled when the backbone is built. Exit 3 when the
    source is missing or does not fit (naming the layer and both shapes)."""
    if spec in ("imagenet", "none"):
        return
    path = Path(os.path.expanduser(spec))
    mine = backbone_layers(model)
    if not mine:
        raise DataError(
            f"`model.weights: {spec}`: this model has no backbone (no global pooling or flatten)."
        )
    if path.is_dir():
        source = path / "model.keras"
        if not source.is_file():
            raise DataError(
                f"`model.weights: {spec}`: {source} not found; give a finished dltrain run directory "
                "(it holds model.keras), a .keras model or a .weights.h5/.h5 file."
            )
        _copy_from_model(mine, source, spec)
    elif path.suffix == ".keras" and path.is_file():
        _copy_from_model(mine, path, spec)
    elif path.name.endswith(".h5") and path.is_file():
        target = _backbone_model(model, mine)
        try:
            target.load_weights(str(path))
        except Exception as exc:  # Keras names the layer and the shapes
            raise DataError(
                f"`model.weights: {spec}`: the weights do not fit this backbone: {str(exc).splitlines()[0][:300]}"
            ) from None
    else:
        raise DataError(
            f"`model.weights: {spec}`: not found, or not a run directory, a .keras model or a .weights.h5/.h5 "
            "file. Use imagenet, none, or one of those."
        )


def _backbone_model(model: keras.Model, mine: list[keras.layers.Layer]) -> keras.Model:
    if len(mine) == 1 and isinstance(mine[0], keras.Model):
        return mine[0]
    return keras.Model(model.inputs, mine[-1].output)


def _copy_from_model(mine: list[keras.layers.Layer], source: Path, spec: str) -> None:
    try:
        other = keras.saving.load_model(source, compile=False, safe_mode=True)
    except Exception as exc:
        raise DataError(
            f"`model.weights: {spec}`: cannot load {source}: {str(exc).splitlines()[0][:200]}"
        ) from None
    theirs = backbone_layers(other)
    if len(theirs) != len(mine):
        raise DataError(
            f"`model.weights: {spec}`: its backbone has {len(theirs)} weighted layers "
            f"({', '.join(layer.name for layer in theirs[:6])}...), this model's has {len(mine)}; "
            "use the same model settings before the pooling (filters, convs_per_block, batch_norm, arch)."
        )
    pairs = []
    for a, b in zip(leaf_layers(theirs), leaf_layers(mine), strict=False):
        for wa, wb in zip(a.weights, b.weights, strict=False):
            if tuple(wa.shape) != tuple(wb.shape):
                raise DataError(
                    f"`model.weights: {spec}`: layer {a.name} weight {wa.name} has shape {tuple(wa.shape)} in "
                    f"{source}, but this model's {b.name} needs {tuple(wb.shape)} (the input channels or the "
                    "filters differ)."
                )
            pairs.append((wa, wb))
        if len(a.weights) != len(b.weights):
            raise DataError(
                f"`model.weights: {spec}`: layer {a.name} has {len(a.weights)} weights in {source}, this model's "
                f"{b.name} has {len(b.weights)}."
            )
    if len(leaf_layers(theirs)) != len(leaf_layers(mine)):
        raise DataError(f"`model.weights: {spec}`: the backbones have different numbers of layers.")
    for wa, wb in pairs:
        wb.assign(wa)
