"""The dataset registry and ``load_splits``: config -> a loader's partial ``Splits`` -> complete splits.

Every loader has the same signature, ``loader(cfg, seed) -> Splits``: ``cfg`` is its own section of the config
(``DigitsData``, ``CsvData``, ...) and ``seed`` the experiment's, for the loaders that carve validation
themselves (statistics from the training rows only) or seed augmentation. Loaders register under their
``data.kind`` in ``DATASETS``; the module holding each is in ``LOADER_MODULES`` and is imported on first use,
so the registry depends on no loader and each loader module depends on this one.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from typing import Any

import numpy as np

from dltrain.config.schema import DataConfig
from dltrain.data.folders import check_each_file_once
from dltrain.data.splits import Splits, carve_indices, check_pair, resolve_task, scale_for
from dltrain.errors import DataError
from dltrain.registry import Registry

# Any: each loader takes its own config class, which a Callable over the DataConfig union would not accept.
Loader = Callable[[Any, int], Splits]
DATASETS: Registry[Loader] = Registry("dataset")
LOADER_MODULES = {
    "mnist": "dltrain.data.builtin",
    "fashion_mnist": "dltrain.data.builtin",
    "digits": "dltrain.data.builtin",
    "idx": "dltrain.data.builtin",
    "npz": "dltrain.data.builtin",
    "image_folder": "dltrain.data.images",
    "csv": "dltrain.data.tabular",
    "timeseries_csv": "dltrain.data.timeseries",
    "text_folder": "dltrain.data.text",
}
"""Where the loader of each ``data.kind`` lives; importing the module registers it."""


def load_splits(cfg: DataConfig, seed: int) -> Splits:
    """Load the dataset named by ``cfg.kind`` and carve validation (and test, where needed) with ``seed``.

    Raises:
        DataError: the files are missing or malformed (exit 3), always before any model is built.
    """
    if cfg.kind in LOADER_MODULES:
        importlib.import_module(LOADER_MODULES[cfg.kind])  # registers the loader
    loaded = DATASETS.get(cfg.kind)(cfg, seed)
    task = resolve_task(cfg.task, loaded.task, loaded.y_train, loaded.source)
    names = loaded.class_names if task != "regression" else []
    n_classes = len(names) if names else None
    if task == "binary" and n_classes not in (None, 2):
        raise DataError(f"{loaded.source}: data.task is binary but the data has {n_classes} classes.")
    y_train = check_pair(loaded.x_train, loaded.y_train, "train", loaded.source, n_classes, task)
    if task != "regression" and len(np.unique(y_train)) < 2:
        only = (
            names[int(y_train[0])]
            if names and len(y_train)
            else (str(y_train[0]) if len(y_train) else "none")
        )
        raise DataError(
            f"{loaded.source}: the training data holds one class only ({only!r}, {len(y_train)} example(s)); a "
            "classification needs at least two classes. Add examples of the other classes, or set "
            "data.task: regression if the label is a number to predict."
        )
    if task != "regression" and not names:
        names = [str(i) for i in range(max(int(y_train.max()) + 1, 2 if task == "binary" else 1))]
    x_train = loaded.x_train
    x_val, y_val = loaded.x_val, loaded.y_val
    notes = list(loaded.notes)
    manifest = dict(loaded.manifest)
    if x_val is None or y_val is None:
        if cfg.validation_split > 0:
            keep, held = carve_indices(
                y_train, cfg.validation_split, seed, "data.validation_split", stratify=task != "regression"
            )
            x_train, x_val, y_train, y_val = x_train[keep], x_train[held], y_train[keep], y_train[held]
            if "train" in manifest:
                items = manifest["train"]
                manifest["train"], manifest["validation"] = [items[i] for i in keep], [items[i] for i in held]
            notes.append(f"validation: {len(y_val)} examples carved from train with seed {seed}")
    else:
        y_val = check_pair(x_val, y_val, "validation", loaded.source, len(names) or None, task)
    x_test, y_test = loaded.x_test, loaded.y_test
    if x_test is not None and y_test is not None:
        y_test = check_pair(x_test, y_test, "test", loaded.source, len(names) or None, task)
    for split, xs in (("validation", x_val), ("test", x_test)):
        if xs is not None and loaded.shape is None and xs.shape[1:] != x_train.shape[1:]:
            raise DataError(
                f"{loaded.source}: {split} inputs have shape {xs.shape[1:]} but train inputs {x_train.shape[1:]}."
            )
    if loaded.input_kind == "image_files":
        check_each_file_once(
            {name: [str(p) for p in xs] for name, xs in (("train", x_train), ("validation", x_val), ("test", x_test))
             if xs is not None}
        )  # fmt: skip
    numeric = x_train.dtype.kind not in ("U", "S", "O")
    target_mean, target_std = loaded.target_mean, loaded.target_std
    if task == "regression" and target_mean is None:
        # Targets are standardised for training with the training split's statistics only.
        target_mean = y_train.mean(axis=0).astype(np.float32)
        target_std = y_train.std(axis=0).astype(np.float32)
    if target_std is not None:
        target_std = np.where(target_std > 0, target_std, 1.0).astype(np.float32)
    return dataclasses.replace(
        loaded,
        x_train=x_train,
        y_train=y_train,
        x_val=x_val,
        y_val=y_val,
        x_test=x_test,
        y_test=y_test,
        class_names=names,
        scale=loaded.scale if loaded.scale else (scale_for(x_train) if numeric else 1.0),
        notes=notes,
        task=task,
        target_names=loaded.target_names
        or ([f"y{i}" for i in range(y_train.shape[1])] if task == "regression" else []),
        target_mean=target_mean,
        target_std=target_std,
        manifest=manifest,
    )
