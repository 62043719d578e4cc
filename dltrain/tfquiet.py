"""Quiet start-up: keep TensorFlow's C++ start-up chatter off the user's terminal. Light zone (no TF import).

Importing TensorFlow prints lines such as ``E0000 ... failed call to cuInit: ... UNKNOWN ERROR (303)`` on a
machine without a GPU, the absl ``WARNING: All log messages before absl::InitializeLog() ...`` banner, cudart_stub,
oneDNN and cpu_feature_guard notices, some of them twice. None of them is a failure, but a new user reads one.
``TF_CPP_MIN_LOG_LEVEL`` does not silence them all: absl, cudart_stub and others write to file descriptor 2
straight from C++. So :func:`install` puts a filter on fd 2 itself:

* the original fd 2 is duplicated and ``sys.stderr`` is rebound to that copy, so Python's own output (logging,
  tracebacks, Rich progress bars, which check ``isatty``) goes straight to the real stderr, unfiltered, and is
  never lost, whatever kills the process;
* fd 2 becomes the write end of a pipe. A small forwarder process (this file run as a script) reads it and
  forwards every line to the real stderr except the known start-up noise (:func:`is_noise`: precise patterns,
  nothing broader). A separate process rather than a thread: when TensorFlow dies in C++ (``F... Check failed``,
  then ``abort()``; a segfault) its last words are still forwarded, since the forwarder reads the pipe to its end;
* before each write to ``sys.stderr`` a sync token goes down the pipe and the write waits (1 s at most) for the
  forwarder's acknowledgement, so a C++ message printed just before a Python traceback still comes out before it;
* at exit fd 2 is put back, which ends the pipe, and the forwarder is waited for (with a timeout) so its last
  lines come out before the shell's prompt.

Off with ``--verbose`` / ``-v`` on the command line or ``DLTRAIN_TF_LOGS=1`` in the environment: then every line
TensorFlow prints reaches stderr as before.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import os
import re
import select
import signal
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

ENV = "DLTRAIN_TF_LOGS"
"""``DLTRAIN_TF_LOGS=1`` (or ``true``/``yes``/``on``) turns the filter off."""

VERBOSE_FLAGS = ("--verbose", "-v")

# A C++ log line's header: absl's ``E0000 00:00:1796180883.319916    8032 cuda_platform.cc:52] `` or TF's older
# ``2024-02-05 12:34:56.789012: I tensorflow/core/util/port.cc:113] ``. Group 1: the source file.
_HEADER = re.compile(
    rb"^(?:[IWEF]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ |\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] )"
    rb"(?:\S*/)?([\w.-]+):\d+\] "
)

# Messages (after a header) that are start-up noise, whichever source file logged them.
_NOISE_MESSAGES = re.compile(
    rb"|".join(
        [
            # No GPU: cuda_platform.cc / cuda_driver.cc.
            rb"failed call to cuInit: ",
            # cudart_stub.cc.
            rb"Could not find cuda drivers on your machine, GPU will not be used\.",
            # dso_loader.cc, for the CUDA and TensorRT libraries only.
            rb"Could not load dynamic library '(?:libcu|libnvinfer|libnccl)",
            # gpu_device.cc on a machine without the CUDA libraries.
            rb"Cannot dlopen some GPU libraries\. ",
            # cuda_dnn.cc / cuda_fft.cc / cuda_blas.cc: the plugins registered twice.
            rb"Unable to register (?:cuDNN|cuFFT|cuBLAS) factory: ",
            # computation_placer.cc.
            rb"computation placer already registered\. ",
            # port.cc.
            rb"oneDNN custom operations are on\. ",
            # cpu_feature_guard.cc.
            rb"This TensorFlow binary is optimized (?:to use available CPU instructions"
            rb"|with oneAPI Deep Neural Network Library \(oneDNN\))",
            # py_utils.cc.
            rb"TF-TRT Warning: (?:Could not find TensorRT|Cannot dlopen some TensorRT libraries)",
            # cuda_executor.cc on GPU machines.
            rb"successful NUMA node read from SysFS had negative value",
        ]
    )
)

# Source files whose every line is start-up noise: cuda_diagnostics.cc explains a failed cuInit (hostname,
# driver versions), cudart_stub.cc says there is no CUDA.
_NOISE_SOURCES = frozenset({b"cuda_diagnostics.cc", b"cudart_stub.cc"})

# Whole lines, without a header: absl's banner and the continuation lines of two multi-line messages.
_NOISE_LINES = re.compile(
    rb"^(?:WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    rb"|To enable (?:the following instructions: .*, in other operations|them in other operations), "
    rb"rebuild TensorFlow with the appropriate compiler flags\."
    rb"|Skipping registering GPU devices\.\.\."
    # LiteRT's interpreter (dltrain predict --model, export's checks), once per process.
    rb"|INFO: Created TensorFlow Lite XNNPACK delegate for CPU\.)$"
)


def is_noise(line: bytes) -> bool:
    """Whether one line (without its newline) is TensorFlow start-up noise to keep off the terminal."""
    line = line.rstrip(b"\r\n")
    if _NOISE_LINES.match(line):
        return True
    header = _HEADER.match(line)
    if header is None:
        return False
    return header.group(1) in _NOISE_SOURCES or _NOISE_MESSAGES.match(line, header.end()) is not None


def enabled(argv: Sequence[str] | None = None, environ: dict[str, str] | None = None) -> bool:
    """Whether the filter should be on: not with ``--verbose``/``-v`` nor with ``DLTRAIN_TF_LOGS=1``."""
    env = os.environ if environ is None else environ
    if env.get(ENV, "").strip().lower() in ("1", "true", "yes", "on"):
        return False
    args = list(sys.argv[1:] if argv is None else argv)
    if "--" in args:
        args = args[: args.index("--")]
    return not any(arg in VERBOSE_FLAGS for arg in args)


_PIPE_SIZE = 1 << 20  # room for a burst of C++ output (Linux; 64 KiB otherwise)
_MAX_PENDING = 1 << 20  # forward a line with no newline once this long
_PARTIAL_WAIT_S = 0.5  # forward a line with no newline after this long without more output
_SYNC_WAIT_S = 1.0  # a Python write waits at most this long for the forwarder
_EXIT_WAIT_S = 2.0  # at exit: how long to wait for the forwarder (a child process may hold the pipe open)
_TOKEN = b"\x00\x1bdltrain-tfquiet-sync\x00"  # one atomic write (< PIPE_BUF): never split in the pipe


def _readable(fd: int, timeout: float | None) -> bool:
    """Whether ``fd`` has data (or its end) within ``timeout`` seconds (None: wait as long as it takes)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    try:
        return bool(poller.poll(None if timeout is None else max(0, int(timeout * 1000))))
    except InterruptedError:
        return False


class _Forwarder:
    """The forwarder process's state: lines from the pipe to the real stderr, noise dropped, syncs acknowledged."""

    def __init__(self, read_fd: int, ack_fd: int, out_fd: int) -> None:
        self.read_fd = read_fd
        self.ack_fd = ack_fd
        self.out_fd = out_fd
        self.pending = b""  # the start of a line whose newline has not come yet
        self.broken = False  # the real stderr is gone (EPIPE): keep reading the pipe, forward nothing

    def emit(self, data: bytes) -> None:
        view = memoryview(data)
        while view and not self.broken:
            try:
                view = view[os.write(self.out_fd, view) :]
            except (InterruptedError, BlockingIOError):
                _writable(self.out_fd)
            except OSError:
                self.broken = True

    def forward(self, lines: list[bytes]) -> None:
        kept = b"".join(line + b"\n" for line in lines if not is_noise(line))
        if kept:
            self.emit(kept)

    def feed(self, data: bytes) -> None:
        """A chunk from the pipe: forward its complete lines; at each sync token, first what came before it."""
        buf, self.pending = self.pending + data, b""
        while (at := buf.find(_TOKEN)) >= 0:
            *lines, partial = buf[:at].split(b"\n")
            self.forward(lines)
            with contextlib.suppress(OSError):  # non-blocking: the writer may have stopped waiting
                os.write(self.ack_fd, b"k")
            buf = partial + buf[at + len(_TOKEN) :]  # a line cut by the token goes on after it
        # A token cut in two by the chunk's end has no newline: it waits in pending, whole after the next read.
        *lines, self.pending = buf.split(b"\n")
        self.forward(lines)
        if len(self.pending) > _MAX_PENDING:
            self.emit(self.pending)
            self.pending = b""

    def run(self) -> None:
        while True:
            if self.pending and not _readable(self.read_fd, _PARTIAL_WAIT_S):
                self.emit(self.pending)  # a partial line that stayed partial: forward it as it is
                self.pending = b""
                continue
            try:
                data = os.read(self.read_fd, 65536)
            except InterruptedError:
                continue
            except OSError:
                data = b""
            if not data:  # every writer is gone: the last line, as it is, unless it is noise
                if self.pending and not is_noise(self.pending):
                    self.emit(self.pending)
                return
            self.feed(data)


def _writable(fd: int) -> None:
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    with contextlib.suppress(InterruptedError):
        poller.poll(1000)


def _forward_main(argv: Sequence[str]) -> int:
    """The forwarder process: ``python -I -S tfquiet.py READ_FD ACK_FD``; its fd 2 is the real stderr."""
    read_fd, ack_fd = (int(arg) for arg in argv)
    os.set_blocking(ack_fd, False)
    _Forwarder(read_fd, ack_fd, 2).run()
    return 0


class _Sync:
    """The dltrain side of the handshake: before a Python write, wait until the forwarder has caught up."""

    def __init__(self, ack_fd: int, pipe_id: tuple[int, int]) -> None:
        self.ack_fd = ack_fd
        self.pipe_id = pipe_id
        self.lock = threading.RLock()
        self.outstanding = 0  # tokens sent and not yet acknowledged (a late acknowledgement counts later)
        self.misses = 0
        self.on = True

    def __call__(self) -> None:
        if not self.on or not self.lock.acquire(timeout=_SYNC_WAIT_S):
            return
        try:
            stat = os.fstat(2)
            if (stat.st_dev, stat.st_ino) != self.pipe_id:
                return  # someone else has fd 2 now (a capture): no token into their stream
            os.write(2, _TOKEN)
            self.outstanding += 1
            deadline = time.monotonic() + _SYNC_WAIT_S
            while self.outstanding > 0:
                if not _readable(self.ack_fd, deadline - time.monotonic()):
                    self.misses += 1
                    self.on = self.misses < 3  # a forwarder that stopped answering: stop asking
                    return
                got = os.read(self.ack_fd, 4096)
                if not got:  # the forwarder is gone
                    self.on = False
                    return
                self.outstanding -= len(got)
            self.misses = 0
        except OSError:
            self.on = False
        finally:
            self.lock.release()


class _SyncedStderr(io.TextIOWrapper):
    """``sys.stderr`` on the real stderr; lets the forwarder catch up before each write so the order holds."""

    _sync: _Sync | None = None

    def write(self, text: str) -> int:
        if self._sync is not None:
            self._sync()
        return super().write(text)


_state: dict[str, Any] = {}


def install(argv: Sequence[str] | None = None) -> bool:
    """Filter TensorFlow's start-up noise out of fd 2 for the rest of the process, unless turned off.

    Call it first thing, before TensorFlow is imported. Returns whether the filter is on. Safe to call twice.
    """
    if _state:
        return True
    if not enabled(argv) or os.name != "posix" or not sys.executable:
        return False
    import fcntl
    import subprocess

    old = sys.stderr
    try:
        if old is not None:
            old.flush()
        real_fd = os.dup(2)
    except (OSError, ValueError):
        return False  # no usable fd 2: nothing to filter
    read_fd, write_fd = os.pipe()
    ack_read, ack_write = os.pipe()
    try:
        forwarder = subprocess.Popen(
            [sys.executable, "-I", "-S", os.path.abspath(__file__), str(read_fd), str(ack_write)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=real_fd,
            pass_fds=(read_fd, ack_write),
            start_new_session=True,  # no Ctrl-C (it drains to the end, then exits) and no SIGTTOU
        )
    except OSError:
        for fd in (real_fd, read_fd, write_fd, ack_read, ack_write):
            os.close(fd)
        return False
    os.close(read_fd)
    os.close(ack_write)
    if hasattr(fcntl, "F_SETPIPE_SZ"):
        with contextlib.suppress(OSError):
            fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, _PIPE_SIZE)
    stat = os.fstat(write_fd)
    os.dup2(write_fd, 2)
    os.close(write_fd)
    sync = _Sync(ack_read, (stat.st_dev, stat.st_ino))
    stream = _SyncedStderr(
        io.FileIO(real_fd, "w", closefd=False),
        encoding=getattr(old, "encoding", None) or "utf-8",
        errors=getattr(old, "errors", None) or "backslashreplace",
        line_buffering=bool(getattr(old, "line_buffering", False)),
        write_through=True,
    )
    stream._sync = sync
    sys.stderr = stream
    _state.update(real_fd=real_fd, forwarder=forwarder, sync=sync, pid=os.getpid())
    atexit.register(_uninstall)
    os.register_at_fork(after_in_child=_after_fork_in_child)
    return True


def _after_fork_in_child() -> None:
    # The acknowledgements are the parent's: no syncing here. This child's C++ writes still go through the filter.
    sync = _state.get("sync")
    if sync is not None:
        sync.on = False
        sync.lock = threading.RLock()


def _uninstall() -> None:
    """At exit: put the real stderr back on fd 2, which ends the pipe, and let the forwarder finish."""
    if not _state or _state["pid"] != os.getpid():
        return
    _state["sync"].on = False
    with contextlib.suppress(OSError, ValueError, AttributeError):
        sys.stderr.flush()
    os.dup2(_state["real_fd"], 2)  # closes this process's write end: the forwarder reads the end of the pipe
    with contextlib.suppress(Exception):
        _state["forwarder"].wait(_EXIT_WAIT_S)


if __name__ == "__main__":
    # The forwarder ends when every writer has closed the pipe (dltrain's exit, however it comes), not before:
    # a Ctrl-C or SIGTERM meant for dltrain must not cut off what dltrain still has to say.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.exit(_forward_main(sys.argv[1:]))
