"""``image_folder``: images in class folders, scanned and checked before TensorFlow starts (light zone).

Two layouts, as fast.ai and Keras read them (scanned by ``dltrain.data.folders``)::

    root/train/<class>/*.png      root/valid/ (or val/, validation/) and root/test/ optional
    root/<class>/*.png            validation and test carved with data.validation_split / data.test_split

Only the file list is kept in memory: the splits hold file paths and ``dltrain.data.pipeline.images`` decodes them
per batch. Every file is opened with Pillow here, so a missing folder, an empty class or a corrupt image is
an exit 3 naming the path and the config key before any model is built, not a tf.data error mid-epoch.
``read_images`` decodes a few files the way the TF pipeline does (bilinear, antialiased), and
``display_images`` gives a few examples of any image dataset as floats in [0, 1], for plots.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dltrain.config.schema import ImageFolderData
from dltrain.data.builtin import DEBIAN_FASHION_DIR, FASHION_CLASSES
from dltrain.data.folders import (
    FolderKind,
    FolderSplit,
    as_arrays,
    check_test_split,
    find_layout,
    scan_layout,
)
from dltrain.data.formats import read_idx_folder
from dltrain.data.loading import DATASETS
from dltrain.data.splits import TEST_SEED, Splits, carve_indices
from dltrain.errors import DataError

log = logging.getLogger(__name__)

# What tf.io.decode_image reads (JPEG XL aside): the extensions Keras' image_dataset_from_directory takes, and
# WebP. Matched case-insensitively; other files in a class folder are ignored (and counted in the notes).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
TF_FORMATS = {"PNG", "JPEG", "BMP", "GIF", "WEBP"}
SKIPPED_LISTED = 100  # skipped files named in data/state.json (all are counted)
IMAGE_FILES = FolderKind(
    data_kind="image_folder",
    extensions=IMAGE_EXTENSIONS,
    files="images",
    pattern="*.png",
    empty_class=lambda folder, ignored: (
        f"`data.path`: {folder} holds no images ({', '.join(IMAGE_EXTENSIONS)}); remove the folder or add images."
    ),
)


# ------------------------------------------------------------------------------------------ checking


def _bmp_problem(path: str) -> str | None:
    """What TensorFlow's BMP decoder (TF 2.21) refuses, read from the header: it takes 8, 24 or 32 bits per pixel
    and a file exactly as long as its header and rows say (Pillow reads more: 1-, 4- and 16-bit, RLE)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(54)
            size = os.fstat(fh.fileno()).st_size
    except OSError as exc:
        return f"cannot read it ({exc.strerror})"
    if len(head) < 30:
        return "truncated BMP header"
    offset = int.from_bytes(head[10:14], "little", signed=True)
    width = int.from_bytes(head[18:22], "little", signed=True)
    height = int.from_bytes(head[22:26], "little", signed=True)
    bpp = int.from_bytes(head[28:30], "little")
    if bpp // 8 not in (1, 3, 4):
        return f"{bpp}-bit BMP, which TensorFlow cannot decode (8, 24 or 32 bits per pixel); save it as PNG"
    row = (bpp // 8 * width + 3) // 4 * 4
    if width <= 0 or height == 0 or offset < 0 or offset + row * abs(height) != size:
        return "BMP whose size does not match its header (truncated, compressed or padded); save it as PNG"
    return None


_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def _png_problem(path: str) -> str | None:
    """Inflate a PNG's image data and check it holds every row its header promises: libpng (TensorFlow) refuses a
    short image, where Pillow fills the missing rows with black; corrupt deflate data fails here too."""
    import zlib

    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return f"cannot read it ({exc.strerror})"
    pos, header, inflater, size = 8, b"", zlib.decompressobj(), 0
    try:
        while pos + 8 <= len(data):
            length = int.from_bytes(data[pos : pos + 4], "big")
            kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
            if kind == b"IHDR":
                header = body
            elif kind == b"IDAT":
                size += len(inflater.decompress(body))
            elif kind == b"IEND":
                break
            pos += 12 + length
        size += len(inflater.flush())
    except zlib.error as exc:
        return f"corrupt PNG image data ({exc})"
    if len(header) < 13:
        return "PNG without a valid IHDR header"
    width, height = int.from_bytes(header[0:4], "big"), int.from_bytes(header[4:8], "big")
    depth, colour, interlaced = header[8], header[9], header[12]
    bits = _PNG_CHANNELS.get(colour, 1) * depth
    passes = _ADAM7 if interlaced else ((0, 0, 1, 1),)
    expected = 0
    for x0, y0, dx, dy in passes:
        w, h = -(-(width - x0) // dx), -(-(height - y0) // dy)
        if w > 0 and h > 0:
            expected += h * (1 + -(-(w * bits) // 8))
    if size < expected:
        return f"PNG data shorter than its header says ({height} rows promised): truncated or corrupt"
    return None


def check_image(path: str) -> str | None:
    """Why ``path`` cannot be decoded by the input pipeline (TensorFlow), or None when it can.

    Every file is decoded in full with Pillow (a short PNG, corrupt deflate data behind valid CRCs and a
    truncated JPEG all fail here), and TensorFlow's own rules are applied where they are stricter than Pillow's:
    the formats it reads, and its BMP decoder's bit depths and sizes. JPEGs are decoded at 1/8 scale: the whole
    entropy-coded stream is still read. Verdicts are cached by (path, size, modification time).
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            fmt = image.format or "?"
            if fmt not in TF_FORMATS:
                return f"{fmt} image, which TensorFlow cannot decode (PNG, JPEG, BMP, GIF or WebP needed)"
            if fmt == "BMP":
                if image.mode == "P":
                    return "palette BMP, which TensorFlow decodes wrongly; save it as PNG"
                problem = _bmp_problem(path)
                if problem:
                    return problem
            if fmt == "PNG":
                image.verify()  # every chunk's CRC; the pixels are checked by _png_problem
            else:
                if fmt == "JPEG":
                    image.draft(image.mode, (max(image.width // 8, 1), max(image.height // 8, 1)))
                image.load()
        if fmt == "PNG":
            return _png_problem(path)
    except UnidentifiedImageError:
        return "not an image Pillow can identify (empty, truncated or another kind of file)"
    except FileNotFoundError:
        return "file not found"
    except (OSError, SyntaxError, ValueError, EOFError) as exc:  # PIL reports broken data with all of these
        return f"{type(exc).__name__}: {exc}"
    except Image.DecompressionBombError as exc:
        return str(exc)
    return None


# Verdicts of check_image, kept across runs: a 1M-file folder took 35 s to check at every start. Keyed by
# (absolute path, size, modification time in ns); CHECK_RULES changes whenever check_image's rules do, so
# older verdicts are not reused. DLTRAIN_CACHE_DIR (else $XDG_CACHE_HOME/dltrain, else ~/.cache/dltrain).
CACHE_DIR_ENV = "DLTRAIN_CACHE_DIR"
CHECK_RULES = 1


def cache_dir() -> Path:
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dltrain"


def _open_verdicts() -> Any:
    """The verdict cache (sqlite), or None when it cannot be used: the check then runs without it."""
    import sqlite3

    try:
        folder = cache_dir()
        folder.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(folder / "image_checks.sqlite3", timeout=10)
        db.execute(
            "CREATE TABLE IF NOT EXISTS verdicts (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, "
            "rules INTEGER, reason TEXT)"
        )
        return db
    except (OSError, sqlite3.Error) as exc:
        log.debug("image check cache unavailable (%s): checking every file", exc)
        return None


def _bad_images(paths: Sequence[str]) -> dict[int, str]:
    """Index -> reason for every file of ``paths`` that cannot be decoded (verdicts cached, see CHECK_RULES)."""
    import sqlite3

    db = _open_verdicts()
    known: dict[str, tuple[int, int, str | None]] = {}
    if db is not None:
        try:
            query = "SELECT path, size, mtime_ns, reason FROM verdicts WHERE rules = ?"
            rows = db.execute(query, (CHECK_RULES,))
            known = {row[0]: (row[1], row[2], row[3]) for row in rows}
        except sqlite3.Error as exc:
            log.debug("image check cache unreadable (%s): checking every file", exc)
    bad, fresh = {}, []
    for i, path in enumerate(paths):
        full = os.path.abspath(path)
        try:
            st = os.stat(full)
            key: tuple[int, int] | None = (st.st_size, st.st_mtime_ns)
        except OSError:
            key = None  # check_image says why
        cached = known.get(full)
        if key is not None and cached is not None and cached[:2] == key:
            reason = cached[2]
        else:
            reason = check_image(path)
            if key is not None:
                fresh.append((full, key[0], key[1], CHECK_RULES, reason))
        if reason is not None:
            bad[i] = reason
    if db is not None:
        try:
            with db:
                db.executemany("INSERT OR REPLACE INTO verdicts VALUES (?, ?, ?, ?, ?)", fresh)
        except sqlite3.Error as exc:
            log.debug("image check cache not updated (%s)", exc)
        db.close()
    return bad


def _drop_bad(split: FolderSplit, policy: str, skipped: list[str]) -> None:
    bad = _bad_images(split.paths)
    if not bad:
        return
    if policy != "skip":
        i, reason = next(iter(bad.items()))
        more = f" ({len(bad) - 1} more in {split.folder})" if len(bad) > 1 else ""
        raise DataError(
            f"{split.paths[i]}: cannot be decoded: {reason}{more}. Replace or remove it, or set "
            "`data.bad_images: skip` to leave unreadable files out with a warning."
        )
    skipped.extend(split.paths[i] for i in bad)
    keep = [i for i in range(len(split.paths)) if i not in bad]
    split.paths = [split.paths[i] for i in keep]
    split.labels = [split.labels[i] for i in keep]


# ------------------------------------------------------------------------------------------ loading


def _check_no_empty_class(split: FolderSplit, class_names: list[str]) -> None:
    counts = np.bincount(np.asarray(split.labels, dtype=np.int64), minlength=len(class_names))
    for label in np.flatnonzero(counts == 0):
        raise DataError(
            f"`data.path`: {split.folder / class_names[label]} holds no readable images after skipping the "
            "bad ones (`data.bad_images: skip`); fix its files or remove the folder."
        )


def _augment_spec(cfg: ImageFolderData, seed: int) -> dict[str, Any]:
    aug = cfg.augment
    spec: dict[str, Any] = {
        "flip": aug.flip,
        "rotation": aug.rotation,
        "zoom": aug.zoom,
        "translation": aug.translation,
        "contrast": aug.contrast,
    }
    if spec["flip"] == "none" and not any(spec[k] for k in ("rotation", "zoom", "translation", "contrast")):
        return {}
    # The stem rescales pixels to [0, 1] before augmenting: contrast clips to that range.
    spec["value_range"] = [0.0, 1.0]
    spec["seed"] = int(seed)
    return spec


@DATASETS.register("image_folder")
def load_image_folder(cfg: ImageFolderData, seed: int) -> Splits:
    """Scan ``cfg.path``, check every image and return the splits as file paths (``seed`` seeds augmentation).

    Raises:
        DataError: a missing or empty folder, a class folder with no images, class folders that differ
            between splits, or (with ``data.bad_images: error``) a file that cannot be decoded.
    """
    root = Path(cfg.path)
    layout = find_layout(root, IMAGE_FILES, "image folder")
    class_names = layout.class_names
    splits = scan_layout(layout, IMAGE_FILES)
    check_test_split(layout, cfg.test_split)
    notes: list[str] = []
    skipped: list[str] = []
    for split in splits.values():
        _drop_bad(split, cfg.bad_images, skipped)
        _check_no_empty_class(split, class_names)
    if skipped:
        log.warning(
            "skipped %d unreadable image(s) (data.bad_images: skip), e.g. %s", len(skipped), skipped[0]
        )
        notes.append(f"skipped {len(skipped)} unreadable images (data.bad_images: skip)")
    ignored = sum(s.ignored for s in splits.values())
    if ignored:
        notes.append(f"ignored {ignored} files without an image extension ({', '.join(IMAGE_EXTENSIONS)})")
    if "validation" in splits:
        notes.append(f"validation: {splits['validation'].folder} (data.validation_split not used)")

    x_train, y_train = as_arrays(splits["train"].paths, splits["train"].labels)
    manifest = {"train": x_train.tolist()}
    x_val = y_val = x_test = y_test = None
    if "validation" in splits:
        x_val, y_val = as_arrays(splits["validation"].paths, splits["validation"].labels)
        manifest["validation"] = x_val.tolist()
    if "test" in splits:
        x_test, y_test = as_arrays(splits["test"].paths, splits["test"].labels)
        manifest["test"] = x_test.tolist()
    elif cfg.test_split > 0:
        keep, held = carve_indices(y_train, cfg.test_split, TEST_SEED, "data.test_split")
        x_train, y_train, x_test, y_test = x_train[keep], y_train[keep], x_train[held], y_train[held]
        manifest["train"], manifest["test"] = x_train.tolist(), x_test.tolist()
        notes.append(f"test: {len(y_test)} images carved from train with the fixed seed {TEST_SEED}")

    height, width = (int(v) for v in cfg.image_size)
    channels = 1 if cfg.color_mode == "grayscale" else 3
    augment = _augment_spec(cfg, seed)
    state: dict[str, Any] = {
        "image": {
            "root": str(root),
            "layout": layout.name,
            "image_size": [height, width],
            "color_mode": cfg.color_mode,
            "channels": channels,
            "interpolation": "bilinear (antialiased)",
            "cache": bool(cfg.cache),
        }
    }
    if skipped:
        state["skipped_images"] = {"count": len(skipped), "files": skipped[:SKIPPED_LISTED]}
    return Splits(
        x_train=x_train,
        y_train=y_train,
        x_val=x_val,
        y_val=y_val,
        x_test=x_test,
        y_test=y_test,
        class_names=class_names,
        scale=255.0,
        source=str(root),
        notes=notes,
        task="classification",
        input_kind="image_files",
        shape=(height, width, channels),
        stem={"augment": augment} if augment else {},
        state=state,
        manifest=manifest,
    )


# ------------------------------------------------------------------------------------------ reading


def read_images(paths: Sequence[str], size: tuple[int, int], channels: int) -> np.ndarray:
    """Decode ``paths`` to uint8 pixels of shape (n, height, width, channels), as the TF pipeline does.

    Pillow's bilinear resize is antialiased like ``tf.image.resize(..., antialias=True)``: the two agree
    within 1 grey level. For plots of a few images (worst mistakes, the inspect grid), never for training.
    """
    from PIL import Image

    height, width = size
    out = np.empty((len(paths), height, width, channels), dtype=np.uint8)
    mode = "L" if channels == 1 else "RGB"
    for i, path in enumerate(paths):
        with Image.open(path) as image:
            if image.mode.startswith("I;16") or image.mode == "I":
                # 16-bit grey: TensorFlow keeps the high byte; Pillow's convert("L") would clip at 255.
                high = (np.asarray(image, dtype=np.uint32) >> 8).astype(np.uint8)
                pixels = Image.fromarray(high).convert(mode)
            else:
                pixels = image.convert(mode)
        if pixels.size != (width, height):
            pixels = pixels.resize((width, height), Image.Resampling.BILINEAR)
        out[i] = np.asarray(pixels, dtype=np.uint8).reshape(height, width, channels)
    return out


def display_images(splits: Splits, split: str, index: np.ndarray) -> np.ndarray | None:
    """Examples ``index`` of ``split`` as float images in [0, 1] for plots; None when not images."""
    x, _ = splits.get(split)
    if splits.input_kind == "image_files":
        h, w, c = splits.input_shape
        return read_images([str(p) for p in x[index]], (h, w), c).astype(np.float64) / 255.0
    if splits.input_kind == "array" and x.ndim in (3, 4) and splits.task != "regression":
        if x.ndim == 4 and x.shape[-1] not in (1, 3):
            return None
        return x[index].astype(np.float64) / splits.scale
    return None


# ------------------------------------------------------------------------------------------ writing


def safe_folder_name(name: str) -> str:
    """A class name as a folder name ("T-shirt/top" -> "T-shirt_top")."""
    return name.replace("/", "_").replace("\\", "_").strip() or "_"


def write_image_folder(
    folder: Path | str,
    images: np.ndarray,
    labels: Iterable[int],
    class_names: Sequence[str],
    fmt: str = "png",
    start: int = 0,
) -> list[Path]:
    """Write uint8 ``images`` (n, h, w[, c]) as ``folder/<class>/<start + i>.<fmt>``; returns the paths.

    For tests, benchmarks and turning an array dataset into the image-folder layout.
    """
    from PIL import Image

    folder = Path(folder)
    written = []
    for i, (pixels, label) in enumerate(zip(images, labels, strict=True)):
        array = np.asarray(pixels, dtype=np.uint8)
        if array.ndim == 3 and array.shape[-1] == 1:
            array = array[..., 0]
        path = folder / safe_folder_name(class_names[int(label)]) / f"{start + i:05d}.{fmt}"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(path)
        written.append(path)
    return written


def export_fashion_mnist(
    root: Path | str,
    source: Path | str = DEBIAN_FASHION_DIR,
    train_limit: int | None = None,
    test_limit: int | None = None,
) -> Path:
    """Fashion-MNIST's IDX files as ``root/train/<class>/*.png`` and ``root/test/<class>/*.png``.

    The one-liner the README shows: ``python -c "from dltrain.data.images import export_fashion_mnist as e;
    e('data/fashion_png')"`` (70,000 PNGs, about 220 MB on disk, a minute or two).
    """
    root, source = Path(root), Path(source)
    arrays = read_idx_folder(source)
    if arrays is None:
        raise DataError(f"{source}: the four Fashion-MNIST IDX files are not all there.")
    for split, limit in (("train", train_limit), ("test", test_limit)):
        images, labels = arrays[f"x_{split}"][:limit], arrays[f"y_{split}"][:limit]
        write_image_folder(root / split, images, labels, FASHION_CLASSES)
    return root
