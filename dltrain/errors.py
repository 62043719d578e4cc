"""Errors a user can act on, each with its own exit code (docs/architecture.md, "Exit codes").

Anything that is not a ``DltrainError`` is a bug: the CLI lets it keep its traceback and exits 1.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_BUG = 1
EXIT_CONFIG = 2
EXIT_DATA = 3
EXIT_NON_FINITE = 4
EXIT_RUN = 5
EXIT_WORKER_LOST = 6
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


class DltrainError(Exception):
    """Base class: a one-line message meant for the user, and the process exit code."""

    exit_code = EXIT_BUG

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(DltrainError):
    """The config or the command line is wrong. Carries every problem found, not just the first."""

    exit_code = EXIT_CONFIG

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []

    def __str__(self) -> str:
        if not self.problems:
            return self.message
        return "\n".join([self.message, *(f"  - {p}" for p in self.problems)])


class DataError(DltrainError):
    """The data named by the config is missing, unreadable or malformed."""

    exit_code = EXIT_DATA


class NonFiniteLossError(DltrainError):
    """The training loss became NaN or infinite."""

    exit_code = EXIT_NON_FINITE


class RunDirError(DltrainError):
    """A run directory or checkpoint is missing, locked or unusable."""

    exit_code = EXIT_RUN


class WorkerLostError(DltrainError):
    """Another worker of a multi-worker cluster died or stopped answering."""

    exit_code = EXIT_WORKER_LOST


class Interrupted(DltrainError):
    """Stopped by Ctrl-C (exit 130) or SIGTERM (exit 143) after a clean checkpoint."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code
