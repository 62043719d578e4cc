"""Ctrl-C and SIGTERM become a request to stop at the next step boundary, not an exception mid-write."""

from __future__ import annotations

import contextlib
import logging
import signal
from collections.abc import Iterator
from types import FrameType

from dltrain.errors import EXIT_INTERRUPTED, EXIT_TERMINATED

log = logging.getLogger(__name__)


class StopRequest:
    """Set by a signal handler; the training loop polls it between steps."""

    def __init__(self) -> None:
        self.signal: int | None = None

    @property
    def requested(self) -> bool:
        return self.signal is not None

    @property
    def exit_code(self) -> int:
        return EXIT_TERMINATED if self.signal == signal.SIGTERM else EXIT_INTERRUPTED

    @property
    def name(self) -> str:
        return "SIGTERM" if self.signal == signal.SIGTERM else "Ctrl-C"

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signal is None:
            self.signal = signum
            log.warning("%s received: stopping after this step and saving a checkpoint", self.name)
        else:
            # A second signal while the checkpoint is written must not tear it: note it and carry on.
            log.warning("%s again: still saving the checkpoint, please wait", self.name)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """Within the block, SIGINT and SIGTERM set the returned request instead of killing the process."""
    request = StopRequest()
    previous = {sig: signal.signal(sig, request._handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield request
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
