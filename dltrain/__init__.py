"""dltrain: train Keras 3 / TensorFlow models from strict YAML experiment configs.

In a notebook: ``run = dltrain.load_run("runs/X"); run.predict("new_images/")`` (TensorFlow loads on the first
predict, not on import).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from dltrain.predict.api import Run


def load_run(path: Any) -> Run:
    """A trained run directory, ready to ``predict`` (see ``dltrain.predict.api.Run``)."""
    from dltrain.predict.api import load_run as _load_run

    return _load_run(path)


__all__ = ["__version__", "load_run"]
