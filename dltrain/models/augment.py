"""Image augmentation built into the model: Keras preprocessing layers, active in training only.

They live inside the model (after the input is rescaled to [0, 1]) rather than in tf.data, so they run
where the model runs (the GPU, when there is one), every training step draws new random changes, and
``model(x, training=False)`` (validation, evaluate, predict, the exported ``model.keras``) passes images
through untouched. Each layer gets its own seed derived from the run's seed, and its random state is one of
``model.variables``, which the checkpoint saves, so a resumed run draws the same changes as an
uninterrupted one.
"""

from __future__ import annotations

from typing import Any

import keras

FLIP_MODES = {"horizontal": "horizontal", "vertical": "vertical", "both": "horizontal_and_vertical"}


def _seed(spec: dict[str, Any], offset: int) -> int | None:
    """A distinct seed per layer; None (Keras draws one from the seeded global generator) without a run seed."""
    seed = spec.get("seed")
    return None if seed is None else int(seed) * 1000 + offset


def layers(spec: dict[str, Any]) -> list[keras.layers.Layer]:
    """The augmentation layers ``spec`` asks for, in a fixed order: flip, rotation, zoom, translation,
    contrast. ``spec`` holds the ``data.augment`` values, ``value_range`` of the inputs and ``seed``."""
    out: list[keras.layers.Layer] = []
    flip = spec.get("flip", "none")
    if flip != "none":
        out.append(keras.layers.RandomFlip(FLIP_MODES[flip], seed=_seed(spec, 1), name="augment_flip"))
    if spec.get("rotation"):
        out.append(
            keras.layers.RandomRotation(float(spec["rotation"]), seed=_seed(spec, 2), name="augment_rotation")
        )
    if spec.get("zoom"):
        # One factor for height and width keeps the aspect ratio.
        out.append(keras.layers.RandomZoom(float(spec["zoom"]), seed=_seed(spec, 3), name="augment_zoom"))
    if spec.get("translation"):
        shift = float(spec["translation"])
        out.append(
            keras.layers.RandomTranslation(shift, shift, seed=_seed(spec, 4), name="augment_translation")
        )
    if spec.get("contrast"):
        low, high = spec.get("value_range", (0.0, 1.0))
        out.append(
            keras.layers.RandomContrast(
                float(spec["contrast"]),
                value_range=(float(low), float(high)),
                seed=_seed(spec, 5),
                name="augment_contrast",
            )
        )
    return out


def build(x: keras.KerasTensor, spec: dict[str, Any]) -> keras.KerasTensor:
    """``x`` through the augmentation layers of ``spec`` (identity when it asks for none)."""
    for layer in layers(spec):
        x = layer(x)
    return x
