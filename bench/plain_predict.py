"""The plain baseline of ``dltrain predict``: decode PNGs with Pillow, ``model.predict``, write id,class,prob.

Usage: python bench/plain_predict.py MODEL.keras FOLDER OUT.csv [BATCH]
What a practitioner would write by hand for the same job (same model file, same PNG files, same output rows).
"""

from __future__ import annotations

import csv
import glob
import os
import sys

import keras
import numpy as np
from PIL import Image


def main() -> None:
    model_path, folder, out = sys.argv[1:4]
    batch = int(sys.argv[4]) if len(sys.argv) > 4 else 256
    model = keras.saving.load_model(model_path, compile=False)
    height, width, channels = (int(d) for d in model.inputs[0].shape[1:])
    mode = "L" if channels == 1 else "RGB"
    paths = sorted(glob.glob(os.path.join(folder, "**", "*.png"), recursive=True))
    with open(out, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "predicted", "probability"])
        for start in range(0, len(paths), batch):
            chunk = paths[start : start + batch]
            pixels = []
            for path in chunk:
                with Image.open(path) as image:
                    image = image.convert(mode)
                    if image.size != (width, height):
                        image = image.resize((width, height), Image.BILINEAR)
                    pixels.append(np.asarray(image, dtype=np.float32).reshape(height, width, channels))
            probs = model.predict(np.stack(pixels), batch_size=batch, verbose=0)
            for path, p in zip(chunk, probs, strict=True):
                writer.writerow([path, int(p.argmax()), f"{float(p.max()):.6g}"])


if __name__ == "__main__":
    main()
