"""TF_CONFIG from --workers/--worker-index, and reading TF_CONFIG without TensorFlow."""

from __future__ import annotations

import json

import pytest

from dltrain.cluster import set_tf_config_from_flags, tf_config_workers
from dltrain.errors import ConfigError


@pytest.fixture(autouse=True)
def _no_tf_config(monkeypatch: pytest.MonkeyPatch) -> None:
    # setenv first so monkeypatch remembers "unset" and removes what the code under test sets
    monkeypatch.setenv("TF_CONFIG", "")
    monkeypatch.delenv("TF_CONFIG")


def test_flags_build_tf_config(monkeypatch: pytest.MonkeyPatch) -> None:
    set_tf_config_from_flags("10.0.0.1:2222, 10.0.0.2:2222", 1)
    import os

    spec = json.loads(os.environ["TF_CONFIG"])
    assert spec == {
        "cluster": {"worker": ["10.0.0.1:2222", "10.0.0.2:2222"]},
        "task": {"type": "worker", "index": 1},
    }
    assert tf_config_workers() == 2


@pytest.mark.parametrize(
    ("workers", "index", "message"),
    [
        ("a:1,b:2", None, "go together"),
        (None, 0, "go together"),
        ("a:1,b:2", 2, "between 0 and 1"),
        ("a,b", 0, "host:port"),
    ],
)
def test_bad_flags_are_config_errors(
    monkeypatch: pytest.MonkeyPatch, workers: str | None, index: int | None, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        set_tf_config_from_flags(workers, index)


def test_flags_and_tf_config_together_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["a:1"]}}')
    with pytest.raises(ConfigError, match="use one of them"):
        set_tf_config_from_flags("a:1", 0)


def test_tf_config_counts_chief_and_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    assert tf_config_workers() == 0
    monkeypatch.setenv(
        "TF_CONFIG", json.dumps({"cluster": {"chief": ["a:1"], "worker": ["b:1", "c:1"], "ps": ["d:1"]}})
    )
    assert tf_config_workers() == 3
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ConfigError, match="TF_CONFIG is set but is not valid"):
        tf_config_workers()
