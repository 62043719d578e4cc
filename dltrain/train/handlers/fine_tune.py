"""Transfer learning's handler: the backbone's optimizer in the run's checkpoint, and the phase change logged.

The backbone's optimizer (its own Adam moments and step count, fresh at unfreezing) is saved under the name
``backbone_optimizer``, only in runs that fine-tune, so resume is bit-exact across the frozen/unfrozen boundary
and runs made without it keep restoring.
"""

from __future__ import annotations

import logging
from typing import Any

from dltrain.train.events import Handler, Phase, TrainingLoop
from dltrain.train.step import TrainStep

log = logging.getLogger("dltrain.train.loop")


class FineTune(Handler):
    def __init__(self, step: TrainStep) -> None:
        self.backbone_optimizer = step.all_groups[1].optimizer

    def checkpoint_state(self) -> dict[str, Any]:
        return {"backbone_optimizer": self.backbone_optimizer}

    def on_phase_begin(self, loop: TrainingLoop, phase: Phase) -> None:
        trained = sum(int(v.numpy().size) for v in loop.step.model.trainable_variables)
        log.info(
            "phase %s (epochs %d-%d): %d trainable parameters",
            phase.name,
            phase.first_epoch,
            phase.last_epoch,
            trained,
        )
