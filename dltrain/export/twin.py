"""The inference twin of a run's ``model.keras``: the same weights in a graph every export format can hold.

``model.keras`` is built for training and for TensorFlow: augmentation layers (identity at inference, but random
ops and seed state in the graph), a ``Normalization`` layer (ONNX turns its mean and variance into extra
required inputs), recurrent layers as a ``while`` loop (LiteRT needs Flex ops for it), mixed-precision dtype
policies, and for text a ``TextVectorization`` layer that neither ONNX nor the plain LiteRT interpreter can run.
The twin is the same computation without those: float32 throughout, augmentation removed, ``Normalization``
folded into ``Rescaling`` (x * 1/std - mean/std), recurrent layers unrolled, and for text the graph from the
token ids on (the export folder records the vocabulary, and the TF-free ``predict`` vectorises the text).
"""

from __future__ import annotations

import copy
from typing import Any

import keras
import numpy as np

AUGMENTATION = {
    "RandomFlip",
    "RandomRotation",
    "RandomZoom",
    "RandomTranslation",
    "RandomContrast",
    "RandomBrightness",
    "RandomCrop",
}
RECURRENT = {"LSTM", "GRU", "SimpleRNN"}


def _float32(config: Any) -> Any:
    """``config`` with every dtype policy (mixed_float16, mixed_bfloat16, ...) made float32."""
    if isinstance(config, dict):
        out = {}
        for key, value in config.items():
            if (
                key == "dtype"
                and isinstance(value, dict)
                and "DTypePolicy" in str(value.get("class_name", ""))
            ):
                out[key] = "float32"
            elif key == "dtype" and isinstance(value, str) and value.startswith("mixed_"):
                out[key] = "float32"
            else:
                out[key] = _float32(value)
        return out
    if isinstance(config, list):
        return [_float32(v) for v in config]
    return config


def _unrolled(config: dict[str, Any]) -> dict[str, Any]:
    config = copy.deepcopy(config)
    config["unroll"] = True
    return config


def _folded_normalization(layer: keras.layers.Layer) -> keras.layers.Layer:
    """``Normalization`` as the ``Rescaling`` that computes the same: (x - mean) / max(sqrt(var), eps)."""
    mean = np.asarray(keras.ops.convert_to_numpy(layer.mean), dtype=np.float64).reshape(-1)
    variance = np.asarray(keras.ops.convert_to_numpy(layer.variance), dtype=np.float64).reshape(-1)
    std = np.maximum(np.sqrt(variance), keras.backend.epsilon())
    return keras.layers.Rescaling(
        scale=(1.0 / std).astype(np.float32), offset=(-mean / std).astype(np.float32), name=layer.name
    )


def twin_layer(layer: keras.layers.Layer) -> keras.layers.Layer:
    """The twin of one layer (new weights, copied afterwards by ``copy_weights``)."""
    kind = type(layer).__name__
    if kind in AUGMENTATION:
        return keras.layers.Identity(name=layer.name)
    if kind == "Normalization":
        return _folded_normalization(layer)
    config = _float32(layer.get_config())
    if kind in RECURRENT:
        config = _unrolled(config)
    elif kind == "Bidirectional":
        for key in ("layer", "backward_layer"):
            if isinstance(config.get(key), dict):
                config[key] = dict(config[key], config=_unrolled(config[key]["config"]))
    return type(layer).from_config(config)


def copy_weights(source: keras.Model, twin: keras.Model) -> None:
    """Every weight of ``source`` into the layer of the same name in ``twin`` (replaced layers have none)."""
    for layer in twin.layers:
        try:
            original = source.get_layer(layer.name)
        except ValueError:
            continue
        if type(original).__name__ in AUGMENTATION or type(original).__name__ == "Normalization":
            continue
        values = original.get_weights()
        if len(values) != len(layer.weights):
            raise RuntimeError(
                f"inference twin: layer {layer.name!r} has {len(layer.weights)} weights, the model {len(values)}"
            )
        if values:
            layer.set_weights(values)


def text_body(model: keras.Model) -> keras.Model:
    """A text model from its token ids on: the layers after ``vectorize`` (the same layer objects)."""
    return keras.Model(model.get_layer("vectorize").output, model.outputs[0], name=model.name)


def build_twin(model: keras.Model, text: bool = False) -> keras.Model:
    """The inference twin of ``model`` (a functional Keras model with one input)."""
    source = text_body(model) if text else model
    inputs = None
    if text:
        length = int(source.inputs[0].shape[1])
        inputs = keras.Input(shape=(length,), dtype="int64", name="token_ids")
    twin = keras.models.clone_model(source, input_tensors=inputs, clone_function=twin_layer)
    copy_weights(source, twin)
    # Frozen throughout: a non-trainable BatchNormalization normalises with its moving statistics whatever
    # `training` says. A nested backbone (keras.applications) traced by the SavedModel / ONNX exporters with
    # training unset otherwise ran its batch norm on the batch's statistics (found by the export check).
    twin.trainable = False
    return twin


def vectorize(model: keras.Model, texts: Any) -> np.ndarray:
    """Token ids of ``texts`` through the model's own ``TextVectorization`` layer (TensorFlow's reference)."""
    import tensorflow as tf

    layer = model.get_layer("vectorize")
    with tf.device("/cpu:0"):
        return np.asarray(layer(tf.constant([str(t) for t in texts])), dtype=np.int64)


def text_vocabulary(model: keras.Model) -> tuple[list[str], dict[str, Any]]:
    layer = model.get_layer("vectorize")
    config = layer.get_config()
    settings = {k: config.get(k) for k in ("standardize", "split", "output_sequence_length", "max_tokens")}
    return [str(t) for t in layer.get_vocabulary()], settings
