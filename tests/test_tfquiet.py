"""Quiet start-up: TensorFlow's C++ start-up noise stays off stderr; everything else still reaches the user.

These subprocesses run without ``TF_CPP_MIN_LOG_LEVEL`` (conftest's ``run_dltrain`` sets it to 3 for every other
test), so they see what a user sees.
"""

from __future__ import annotations

import os
import pty
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dltrain import tfquiet
from tests.conftest import REPO, dltrain_cmd

# What a user saw before, on a machine without a GPU (collected with the filter off), and the other kinds the
# filter drops. Written out here rather than taken from dltrain.tfquiet, so the tests check its patterns.
STARTUP_NOISE = [
    r"All log messages before absl::InitializeLog\(\) is called",
    r"cudart_stub\.cc",
    r"Could not find cuda drivers",
    r"failed call to cuInit",
    r"UNKNOWN ERROR \(303\)",
    r"cpu_feature_guard",
    r"This TensorFlow binary is optimized",
    r"rebuild TensorFlow with the appropriate compiler flags",
    r"oneDNN custom operations",
    r"Unable to register cu(DNN|FFT|BLAS) factory",
    r"computation placer already registered",
    r"TF-TRT Warning",
]

# Real lines, as TensorFlow 2.21 printed them here, and as older TF / GPU machines print them.
NOISE_SAMPLES = [
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    b"I0000 00:00:1796180876.508688    8032 cudart_stub.cc:31] Could not find cuda drivers on your machine, "
    b"GPU will not be used.",
    b"E0000 00:00:1796180883.319916    8032 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: "
    b"Failed call to cuInit: UNKNOWN ERROR (303)",
    b"I0000 00:00:1796180900.955597    8596 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use "
    b"available CPU instructions in performance-critical operations.",
    b"To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow with the "
    b"appropriate compiler flags.",
    b"2024-02-05 12:34:56.789012: I tensorflow/core/util/port.cc:113] oneDNN custom operations are on. You may "
    b"see slightly different numerical results due to floating-point round-off errors from different "
    b"computation orders. To turn them off, set the environment variable `TF_ENABLE_ONEDNN_OPTS=0`.",
    b"E0000 00:00:1727000000.123456    1234 cuda_dnn.cc:8310] Unable to register cuDNN factory: Attempting to "
    b"register factory for plugin cuDNN when one has already been registered",
    b"2024-02-05 12:34:56.789012: E external/local_xla/xla/stream_executor/cuda/cuda_fft.cc:607] Unable to "
    b"register cuFFT factory: Attempting to register factory for plugin cuFFT when one has already been registered",
    b"E0000 00:00:1727000000.123456    1234 cuda_blas.cc:1418] Unable to register cuBLAS factory: Attempting to "
    b"register factory for plugin cuBLAS when one has already been registered",
    b"W0000 00:00:1727000000.123456    1234 computation_placer.cc:177] computation placer already registered. "
    b"Please check linkage and avoid linking the same target more than once.",
    b"2024-02-05 12:34:56.789012: W tensorflow/compiler/tf2tensorrt/utils/py_utils.cc:38] TF-TRT Warning: "
    b"Could not find TensorRT",
    b"2023-01-01 00:00:00.000000: W tensorflow/compiler/xla/stream_executor/platform/default/dso_loader.cc:64] "
    b"Could not load dynamic library 'libcudart.so.11.0'; dlerror: libcudart.so.11.0: cannot open shared object",
    b"E0000 00:00:1727000000.123456    1234 cuda_diagnostics.cc:135] retrieving CUDA diagnostic information for "
    b"host: box",
    b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",
]

KEPT_SAMPLES = [
    # A genuine TensorFlow error, C++ side (what a failing op printed here).
    b"W0000 00:00:1796181133.386300   12306 local_rendezvous.cc:412] Local rendezvous is aborting with status: "
    b"INVALID_ARGUMENT: indices[0] = 10 is not in [0, 3)",
    b"2024-02-05 12:34:56.789012: W tensorflow/core/framework/op_kernel.cc:1816] OP_REQUIRES failed at "
    b"gather_op.cc:..: INVALID_ARGUMENT: indices[0] = 10 is not in [0, 3)",
    b"I0000 00:00:1727000000.123456    1234 gpu_device.cc:2022] Created device /job:localhost/replica:0/task:0/"
    b"device:GPU:0 with 78000 MB memory:  -> device: 0, name: NVIDIA H100, compute capability: 9.0",
    b"03:08:03 INFO strategy default (auto: no GPU found, training on the CPU), 1 replica(s), precision float32",
    b"Traceback (most recent call last):",
    b"tensorflow.python.framework.errors_impl.InvalidArgumentError: indices[0] = 10 is not in [0, 3)",
    b"To enable the following instructions, read the manual.",
    b"",
]


def user_env(**extra: str) -> dict[str, str]:
    """The environment a user's shell has: no TF_CPP_MIN_LOG_LEVEL, no test hooks, the filter not turned off."""
    drop = ("TF_CPP_MIN_LOG_LEVEL", "TF_CONFIG", "DLTRAIN_FAULT", tfquiet.ENV)
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    return {**env, **extra}


def noise_in(text: str) -> list[str]:
    return [pattern for pattern in STARTUP_NOISE if re.search(pattern, text)]


@pytest.mark.parametrize("line", NOISE_SAMPLES)
def test_startup_noise_is_recognised(line: bytes) -> None:
    assert tfquiet.is_noise(line)
    assert tfquiet.is_noise(line + b"\n")


@pytest.mark.parametrize("line", KEPT_SAMPLES)
def test_other_lines_are_kept(line: bytes) -> None:
    assert not tfquiet.is_noise(line)


def test_off_with_verbose_or_the_env_variable() -> None:
    assert tfquiet.enabled(["fit", "c.yaml"], {})
    assert not tfquiet.enabled(["fit", "c.yaml", "--verbose"], {})
    assert not tfquiet.enabled(["fit", "-v", "c.yaml"], {})
    assert tfquiet.enabled(["fit", "c.yaml", "--", "-v"], {})  # after --, -v is an argument
    assert not tfquiet.enabled(["fit"], {tfquiet.ENV: "1"})
    assert tfquiet.enabled(["fit"], {tfquiet.ENV: "0"})


@pytest.mark.parametrize(
    "filter_on",
    [
        True,
        # The proof that the test can fail; slow (another TensorFlow start-up): CI runs it.
        pytest.param(False, marks=pytest.mark.slow),
    ],
    ids=["quiet", "DLTRAIN_TF_LOGS=1"],
)
def test_fit_stderr_has_no_startup_noise(filter_on: bool, tmp_path: Path) -> None:
    env = user_env() if filter_on else user_env(DLTRAIN_TF_LOGS="1")
    proc = subprocess.run(
        [
            *dltrain_cmd(),
            "fit",
            "configs/digits_dense.yaml",
            "--set",
            "train.epochs=1",
            "--runs-dir",
            str(tmp_path),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # dltrain's own log lines still come through, and its results on stdout.
    assert "INFO strategy " in proc.stderr, proc.stderr
    assert "INFO run directory: " in proc.stderr and "INFO epoch 1/1  loss " in proc.stderr, proc.stderr
    assert "run: " in proc.stdout
    if filter_on:
        assert noise_in(proc.stderr) == [], proc.stderr
    else:  # the same run with the filter off shows the noise: the assertion above can fail
        assert noise_in(proc.stderr), proc.stderr


@pytest.mark.parametrize("env", [{}, {"DLTRAIN_TF_LOGS": "1"}], ids=["quiet", "DLTRAIN_TF_LOGS=1"])
def test_the_env_variable_turns_the_filter_off(env: dict[str, str]) -> None:
    code = (
        "import os; from dltrain import tfquiet; tfquiet.install([]); "
        "os.write(2, b'WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\\n'); "
        "os.write(2, b'kept\\n')"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=user_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "kept\n" in proc.stderr
    assert ("absl::InitializeLog" in proc.stderr) == bool(env), proc.stderr


# A dltrain command whose TensorFlow op fails: a C++ warning from TF, then a Python traceback from inside TF.
TF_FAILS = textwrap.dedent(
    """
    import sys
    from dltrain import cli

    @cli.app.command("tf-fails")
    def tf_fails() -> None:
        import tensorflow as tf

        tf.gather(tf.constant([1, 2, 3]), [10])

    sys.argv = ["dltrain", "tf-fails"]
    cli.main()
    """
)


def test_a_tensorflow_error_still_reaches_the_user() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", TF_FAILS],
        cwd=REPO,
        env=user_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    err = proc.stderr
    assert proc.returncode == 1, err
    assert noise_in(err) == [], err  # the start-up noise of the TF import is gone ...
    cxx = "INVALID_ARGUMENT: indices[0] = 10 is not in [0, 3)"  # ... TF's C++ message is not
    assert re.search(r"^[IWEF]\d{4} .*\] .*" + re.escape(cxx), err, re.MULTILINE), err
    # The whole Python traceback, from the top down to TF's exception, after the C++ line that came first.
    assert "Traceback (most recent call last):" in err
    assert 'File "<string>", line 9, in tf_fails' in err and "tensorflow/python/eager/execute.py" in err
    assert re.search(
        r"^tensorflow\.python\.framework\.errors_impl\.InvalidArgumentError: .*\[Op:GatherV2\]", err, re.M
    )
    assert err.index(cxx) < err.index("Traceback (most recent call last):"), err


# Without TensorFlow: C++-style writes to fd 2 (os.write) next to Python's own sys.stderr writes.
FD2_WRITES = textwrap.dedent(
    """
    import os, signal, sys
    from dltrain import tfquiet

    assert tfquiet.install([])
    os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\\n")
    os.write(2, b"cxx 1\\n")
    sys.stderr.write("py 2\\n")
    os.write(2, b"E0000 00:00:1796180883.319916    8032 cuda_platform.cc:52] failed call to cuInit: x\\n")
    os.write(2, b"cxx 3\\n")
    print("py 4", file=sys.stderr)
    for i in range(2000):
        print(f"py line {i}", file=sys.stderr)
    os.write(2, b"cxx last, no newline")
    if sys.argv[1] == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_order_kept_and_the_last_line_drained_at_exit() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", FD2_WRITES, "exit"], cwd=REPO, env=user_env(), capture_output=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.decode().split("\n")
    assert lines[:4] == ["cxx 1", "py 2", "cxx 3", "py 4"], lines[:6]
    assert lines[4:-1] == [f"py line {i}" for i in range(2000)]
    assert lines[-1] == "cxx last, no newline"  # drained at exit though it had no newline


def test_sigkill_loses_none_of_pythons_own_output() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", FD2_WRITES, "kill"], cwd=REPO, env=user_env(), capture_output=True, timeout=60
    )
    assert proc.returncode == -9
    err = proc.stderr.decode()
    assert "py 2\n" in err and "py 4\n" in err
    assert err.count("py line ") == 2000 and "py line 1999\n" in err  # written straight to the real stderr


# TensorFlow dying in C++: a fatal log line on fd 2, then abort(), with the GIL held all along (PyDLL keeps it).
CXX_ABORTS = textwrap.dedent(
    """
    import ctypes
    from dltrain import tfquiet

    assert tfquiet.install([])
    libc = ctypes.PyDLL(None)
    line = b"F0000 00:00:1796181133.386300   12306 some_op.cc:12] Check failed: x == y (3 vs. 4)\\n"
    libc.write(2, line, len(line))
    libc.abort()
    """
)


def test_tensorflows_last_words_before_an_abort_are_not_lost() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", CXX_ABORTS],
        cwd=REPO,
        env=user_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == -signal.SIGABRT, proc.stderr
    assert "some_op.cc:12] Check failed: x == y (3 vs. 4)\n" in proc.stderr, proc.stderr


def test_stderr_is_still_a_terminal_for_rich() -> None:
    """Rich draws progress bars only when sys.stderr is a terminal: it must stay one with the filter on."""
    code = (
        "import sys; from dltrain import tfquiet; on = tfquiet.install([]); from dltrain.console import stderr; "
        "print('ON', on, sys.stderr.isatty(), stderr.is_terminal, file=sys.stderr)"
    )
    main, child = pty.openpty()
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code],
            cwd=REPO,
            env=user_env(),
            stdin=child,
            stdout=child,
            stderr=child,
            timeout=60,
        )
        os.close(child)
        child = -1
        out = b""
        while True:
            try:
                chunk = os.read(main, 4096)
            except OSError:  # EIO: the terminal's other side is closed
                break
            if not chunk:
                break
            out += chunk
    finally:
        if child >= 0:
            os.close(child)
        os.close(main)
    assert proc.returncode == 0, out
    assert b"ON True True True" in out, out
