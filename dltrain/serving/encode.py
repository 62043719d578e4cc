"""What an export folder's artefact takes, made from raw inputs without TensorFlow: images decoded and resized
with Pillow, texts turned into token ids with the recorded vocabulary.

Images: TensorFlow (training) and Pillow (here) decode PNG, JPEG, BMP and GIF to the same pixels; where an image
must be resized, both use antialiased bilinear interpolation, rounded to whole grey levels, but their filters
differ slightly (bench/RESULTS.md and the README state the measured difference and the tolerance). Colour to
grey uses ITU-R 601 weights in both, rounded differently (at most one grey level apart).

Text: the same steps as Keras's ``TextVectorization`` with ``lower_and_strip_punctuation`` and ``whitespace``:
lower case, the ASCII punctuation Keras strips removed, split on whitespace, each word looked up (1, "[UNK]",
when absent), cut or padded with 0 to the sequence length. The export checks this against the model's own
layer on the test split before it is reported done.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

# keras.layers.TextVectorization's DEFAULT_STRIP_REGEX.
_PUNCTUATION = re.compile(r'[!"#$%&()\*\+,-\./:;<=>?@\[\\\]^_`{|}~\']')


def load_image(path: str, height: int, width: int, channels: int) -> np.ndarray:
    """One image file -> float32 (height, width, channels) pixels in 0..255, whole numbers, as training saw it."""
    from PIL import Image

    with Image.open(path) as image:
        image.seek(0)  # an animation: its first frame, as TensorFlow's decoder with expand_animations=False
        image = image.convert("L" if channels == 1 else "RGB")
        if image.size != (width, height):
            image = image.resize((width, height), Image.Resampling.BILINEAR, reducing_gap=None)
        pixels = np.asarray(image, dtype=np.float32)
    return pixels.reshape(height, width, channels)


class Vectorizer:
    """Texts -> token ids, as the model's ``TextVectorization`` layer computes them."""

    def __init__(self, vocabulary: Sequence[str], sequence_length: int, settings: dict[str, Any]) -> None:
        standardize = settings.get("standardize", "lower_and_strip_punctuation")
        split = settings.get("split", "whitespace")
        if standardize != "lower_and_strip_punctuation" or split != "whitespace":
            raise ValueError(f"unsupported text vectorisation {standardize!r}/{split!r}")
        self.index = {token: i for i, token in enumerate(vocabulary) if i >= 2 or token not in ("", "[UNK]")}
        self.length = int(sequence_length)

    def ids(self, text: str) -> list[int]:
        words = _PUNCTUATION.sub("", text.lower()).split()
        return [self.index.get(w, 1) for w in words[: self.length]]

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.length), dtype=np.int64)
        for i, text in enumerate(texts):
            ids = self.ids(str(text))
            out[i, : len(ids)] = ids
        return out
