"""``model.keras`` written atomically: a temp file beside it, fsync, rename; never a torn model."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import keras

from dltrain.errors import RunDirError
from dltrain.fsutil import fsync_dir


def save_model_atomic(model: keras.Model, path: Path) -> Path:
    """``model.save`` to a temp file beside ``path``, fsync, rename: never a torn ``model.keras``."""
    fd, tmp_name = tempfile.mkstemp(prefix=".model.", suffix=".keras", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        model.save(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # mkstemp made it 0600
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise RunDirError(f"{path}: could not write the model ({exc.strerror or exc}).") from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    fsync_dir(path.parent)
    return path
