"""The config: strict schema, strict YAML, every error at once with file, line, key and the fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from dltrain.cli import app
from dltrain.config import KINDS, load_config, to_yaml
from dltrain.registry import Registry

runner = CliRunner()

GOOD = """\
name: t
data: {kind: digits, batch_size: 32}
model: {kind: dense}
"""

# (YAML text, fragments every one of which must be in the error output)
BROKEN = {
    "top-level typo": ("name: t\nepoch: 3\ndata: {kind: digits}\nmodel: {kind: dense}\n",
                       [":2:", "unknown key `epoch`", "did you mean `train.epochs`"]),
    "nested typo": ("name: t\ndata: {kind: digits}\nmodel: {kind: dense}\noptimizer:\n  kind: adam\n  lr_rate: 1e-3\n",
                    [":6:", "`optimizer.lr_rate`", "did you mean `learning_rate`"]),
    "wrong type": ("name: t\ndata: {kind: digits}\nmodel: {kind: dense}\ntrain: {epochs: ten}\n",
                   [":4:", "`train.epochs`", "valid integer", "'ten'"]),
    "negative batch": ("name: t\ndata: {kind: digits, batch_size: -1}\nmodel: {kind: dense}\n",
                       [":2:", "`data.batch_size`", "greater than 0", "-1"]),
    "bad choice": ("name: t\ndata: {kind: digits}\nmodel: {kind: dense}\nruntime: {strategy: mirored}\n",
                   [":4:", "`runtime.strategy`", "'mirored'", "auto, default, one_device, mirrored",
                    "did you mean `mirrored`"]),
    "bad kind": ("name: t\ndata: {kind: digits}\nmodel: {kind: cnnn}\n",
                 [":3:", "`model.kind`", "'cnnn'", "dense, cnn, rnn" if False else "cnn", "did you mean `cnn`"]),
    "missing section": ("name: t\nmodel: {kind: dense}\n", ["missing required key `data`"]),
    "empty file": ("", ["the config is empty"]),
    "list at top": ("- a\n- b\n", [":1:", "top level must be a mapping"]),
    "syntax error": ("name: t\ndata: {kind: digits\nmodel: x\n", ["YAML syntax error", ":3:"]),
    "duplicate key": ("name: t\ndata: {kind: digits}\nmodel: {kind: dense}\nname: u\n",
                      [":4:", "duplicate key `name`", "first set on line 1"]),
    "negative lr": ("name: t\ndata: {kind: digits}\nmodel: {kind: dense}\noptimizer: {kind: sgd, learning_rate: -1}\n",
                    [":4:", "`optimizer.learning_rate`", "positive", "'auto'"]),
    "lr range upside down": ("name: t\ndata: {kind: digits}\nmodel: {kind: dense}\nlr_find: {start_lr: 1, end_lr: 0.1}\n",
                             [":4:", "end_lr", "larger than start_lr"]),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_configs_exit_2_with_file_line_key_and_fix(tmp_path: Path, case: str) -> None:
    text, fragments = BROKEN[case]
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    result = runner.invoke(app, ["config", "show", str(path)])
    assert result.exit_code == 2, result.output
    out = " ".join(result.output.split())  # Rich may wrap long lines
    assert str(path.name) in out
    for fragment in fragments:
        assert fragment in out, (fragment, result.output)


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "name: t\nepoch: 3\ndata: {kind: digits, batch_size: 0}\nmodel: {kind: dense, units: [x]}\n"
        "optimizer: {kind: adam, lr_rate: 1}\nruntime: {strategy: mirored}\n"
    )
    result = runner.invoke(app, ["config", "show", str(path)])
    assert result.exit_code == 2
    out = " ".join(result.output.split())
    assert "5 problem(s)" in out
    for key in (
        "`epoch`",
        "`data.batch_size`",
        "`model.units[0]`",
        "`optimizer.lr_rate`",
        "`runtime.strategy`",
    ):
        assert key in out


@pytest.mark.parametrize(
    ("text", "value"), [("1e-3", 0.001), ("1.0e-3", 0.001), (".5", 0.5), ("-2E+4", -20000.0)]
)
def test_yaml_floats_follow_yaml_1_2(tmp_path: Path, text: str, value: float) -> None:
    from dltrain.yamlio import parse_yaml

    data, _ = parse_yaml(f"x: {text}\nn: 10\n", "t")
    assert data["x"] == value and isinstance(data["x"], float)
    assert data["n"] == 10 and isinstance(data["n"], int)


def test_set_overrides_are_parsed_as_yaml_and_validated(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(GOOD)
    cfg = load_config(path, ["optimizer.learning_rate=3e-3", "model.units=[16, 32]", "train.epochs=2"])
    assert cfg.optimizer.learning_rate == 0.003
    assert cfg.model.units == [16, 32]  # type: ignore[union-attr]
    assert cfg.train.epochs == 2
    bad = runner.invoke(app, ["config", "show", str(path), "--set", "train.epochs=-3"])
    assert bad.exit_code == 2 and "train.epochs" in bad.output
    unknown = runner.invoke(app, ["config", "show", str(path), "--set", "train.epoch=3"])
    assert unknown.exit_code == 2 and "unknown key `train.epoch`" in " ".join(unknown.output.split())
    malformed = runner.invoke(app, ["config", "show", str(path), "--set", "train.epochs"])
    assert malformed.exit_code == 2 and "KEY.PATH=VALUE" in malformed.output


def test_config_show_round_trips_with_defaults_filled_in(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(GOOD)
    result = runner.invoke(app, ["config", "show", str(path)])
    assert result.exit_code == 0, result.output
    shown = yaml.safe_load(result.output)
    assert shown["optimizer"]["kind"] == "adam" and shown["train"]["epochs"] == 10  # defaults
    again = tmp_path / "again.yaml"
    again.write_text(result.output)
    assert to_yaml(load_config(again)) == result.output


def test_schema_kinds_match_the_registries() -> None:
    result = runner.invoke(app, ["config", "schema"])
    assert result.exit_code == 0
    schema = json.loads(result.output)
    text = json.dumps(schema)
    import dltrain.models  # noqa: F401  (registers the model builders)
    from dltrain.data import DATASETS
    from dltrain.models.common import MODELS
    from dltrain.optim import OPTIMIZERS, SCHEDULES

    registries: dict[str, Registry] = {  # type: ignore[type-arg]
        "data": DATASETS, "model": MODELS, "optimizer": OPTIMIZERS, "schedule": SCHEDULES,
    }  # fmt: skip
    for family, registry in registries.items():
        assert sorted(KINDS[family]) == registry.names(), family
        for kind in registry.names():
            assert f'"const": "{kind}"' in text or f'"{kind}"' in text


def test_shipped_configs_are_valid() -> None:
    configs = sorted(Path(__file__).resolve().parents[1].glob("configs/*.yaml"))
    assert len(configs) >= 4
    for path in configs:
        load_config(path)


def test_fit_with_a_broken_config_creates_no_run_directory(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("name: t\ndata: {kind: digits}\nmodel: {kind: dense, unitz: 3}\n")
    result = runner.invoke(app, ["fit", str(path), "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2
    assert not (tmp_path / "runs").exists()


def test_registry_rejects_duplicates_and_lists_known_names() -> None:
    reg: Registry = Registry("thing")  # type: ignore[type-arg]
    reg.register("a")(lambda: 1)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a")(lambda: 2)
    with pytest.raises(KeyError, match="expected one of: a"):
        reg.get("b")
