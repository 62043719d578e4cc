"""The config: strict schema, strict YAML, every error at once with file, line, key and the fix."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from dltrain.cli import app
from dltrain.config import KINDS, Config, load_config, to_yaml
from dltrain.config.yamlio import parse_yaml
from dltrain.errors import ConfigError
from dltrain.registry import Registry

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()

GOOD = """\
name: t
data: {kind: digits, batch_size: 32}
model: {kind: dense}
"""
HEAD = "name: t\ndata: {kind: digits}\nmodel: {kind: dense}\n"  # lines 1-3 of most broken configs

# id -> (YAML text, where the message points: "" for the file alone, ":N" for a line, ":N:C" for line:column,
#        fragments every one of which must be in the message)
BROKEN: dict[str, tuple[str, str, list[str]]] = {
    "top-level typo `epoch`": (
        "name: t\nepoch: 3\ndata: {kind: digits}\nmodel: {kind: dense}\n", ":2",
        ["unknown key `epoch`", "did you mean `train.epochs`"]),
    "section key at the top `epochs`": (
        "name: t\nepochs: 3\ndata: {kind: digits}\nmodel: {kind: dense}\n", ":2",
        ["unknown key `epochs`", "did you mean `train.epochs`"]),
    "nested typo `optimizer.lr_rate`": (
        HEAD + "optimizer:\n  kind: adam\n  lr_rate: 1e-3\n", ":6",
        ["unknown key `optimizer.lr_rate`", "did you mean `learning_rate`", "Allowed keys:", "learning_rate"]),
    "`train.epochs: ten`": (
        HEAD + "train: {epochs: ten}\n", ":4",
        ["`train.epochs`", "integer", "Received: 'ten'"]),
    "`data.batch_size: -1`": (
        "name: t\ndata: {kind: digits, batch_size: -1}\nmodel: {kind: dense}\n", ":2",
        ["`data.batch_size`", "greater than 0", "Received: -1"]),
    "`runtime.strategy: mirored`": (
        HEAD + "runtime: {strategy: mirored}\n", ":4",
        ["`runtime.strategy`", "'mirored'", "expected one of: auto, default, one_device, mirrored, multi_worker, tpu",
         "did you mean `mirrored`"]),
    "bad `model.kind`, close": (
        "name: t\ndata: {kind: digits}\nmodel: {kind: cnnn}\n", ":3",
        ["`model.kind`", "'cnnn'", "expected one of: cnn, dense, rnn", "did you mean `cnn`"]),
    "bad `model.kind`, far": (
        "name: t\ndata: {kind: digits}\nmodel: {kind: transformer}\n", ":3",
        ["`model.kind`", "'transformer'", "expected one of: cnn, dense, rnn"]),
    "missing `data.kind`": (
        "name: t\ndata: {batch_size: 8}\nmodel: {kind: dense}\n", ":2",
        ["`data.kind` is missing", "csv, digits, fashion_mnist, idx, image_folder, mnist, npz, text_folder, timeseries_csv"]),
    "missing `data`": (
        "name: t\nmodel: {kind: dense}\n", ":1",
        ["missing required key `data`"]),
    "`data` not a mapping": (
        "name: t\ndata: [1, 2]\nmodel: {kind: dense}\n", ":2",
        ["`data` must be a mapping"]),
    "empty file": ("", "", ["the config is empty", "configs/digits_cnn.yaml"]),
    "only comments": ("# nothing here\n", "", ["the config is empty"]),
    "a list at the top": ("- a\n- b\n", ":1", ["top level must be a mapping", "not a list"]),
    "a scalar at the top": ("hello\n", ":1", ["top level must be a mapping", "not a str"]),
    "YAML syntax error": ("name: t\ndata: {kind: digits\nmodel: x\n", ":3:6", ["YAML syntax error"]),
    "a tab for indentation": ("name: t\ndata:\n\tkind: digits\n", ":3:1", ["YAML syntax error", "'\\t'"]),
    "duplicate top-level key": (
        HEAD + "name: u\n", ":4:1",
        ["duplicate key `name`", "first set on line 1"]),
    "duplicate nested key": (
        "name: t\ndata:\n  kind: digits\n  batch_size: 3\n  batch_size: 4\nmodel: {kind: dense}\n", ":5:3",
        ["duplicate key `data.batch_size`", "first set on line 4"]),
    "`learning_rate: -1`": (
        HEAD + "optimizer: {kind: sgd, learning_rate: -1}\n", ":4",
        ["`optimizer.learning_rate`", "positive", "'auto'", "Received: -1"]),
    "`learning_rate: fast`": (
        HEAD + "optimizer: {kind: sgd, learning_rate: fast}\n", ":4",
        ["`optimizer.learning_rate`", "positive number or 'auto'", "Received: 'fast'"]),
    "lr_find end_lr <= start_lr": (
        HEAD + "lr_find: {start_lr: 1, end_lr: 0.1}\n", ":4",
        ["`lr_find`", "end_lr (0.1) must be larger than start_lr (1.0)"]),
    "lr_find end_lr == start_lr": (
        HEAD + "lr_find:\n  start_lr: 0.01\n  end_lr: 1.0e-2\n", ":4",
        ["end_lr (0.01) must be larger than start_lr (0.01)"]),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_configs_exit_2_naming_file_line_key_and_fix(tmp_path: Path, case: str) -> None:
    text, where, fragments = BROKEN[case]
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    result = runner.invoke(app, ["config", "show", str(path)])
    assert result.exit_code == 2, result.output
    assert result.stdout == ""  # nothing that looks like a resolved config
    err = result.stderr
    assert err.startswith("error: "), err
    # the file (as given) and the line, or line:column, right after it; never a traceback
    assert f"{path}{where}: " in err, (where, err)
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    assert "Traceback" not in result.output


def test_every_problem_is_reported_at_once_in_file_order(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "name: t\nepoch: 3\ndata: {kind: digits, batch_size: 0}\nmodel: {kind: dense, units: [x]}\n"
        "optimizer: {kind: adam, lr_rate: 1}\nruntime: {strategy: mirored}\n"
    )
    result = runner.invoke(app, ["config", "show", str(path)])
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert lines[0] == f"error: {path}: 5 problem(s) in the config"
    expected = [
        (2, "unknown key `epoch`"),
        (3, "`data.batch_size`"),
        (4, "`model.units[0]`"),
        (5, "unknown key `optimizer.lr_rate`"),
        (6, "`runtime.strategy`"),
    ]
    assert len(lines) == 1 + len(expected), result.stderr
    for line, (number, key) in zip(lines[1:], expected, strict=True):
        assert line.startswith(f"  - {path}:{number}: "), line
        assert key in line, (key, line)


def test_duplicate_keys_are_all_reported(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("name: t\nseed: 1\ndata: {kind: digits}\nseed: 2\nmodel: {kind: dense}\nname: u\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert [p.split(": ", 1)[0] for p in err.value.problems] == [f"{path}:4:1", f"{path}:6:1"]
    assert "duplicate key `seed` (first set on line 2)" in str(err.value)
    assert "duplicate key `name` (first set on line 1)" in str(err.value)


def test_a_missing_config_file_or_a_folder_exits_2(tmp_path: Path) -> None:
    missing = runner.invoke(app, ["config", "show", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2 and "nope.yaml: config file not found" in missing.stderr
    folder = runner.invoke(app, ["config", "show", str(tmp_path)])
    assert folder.exit_code == 2 and "is a directory" in folder.stderr


# ------------------------------------------------------------------------------------------ YAML quirks


@pytest.mark.parametrize(
    ("text", "value"),
    [("1e-3", 0.001), ("1.0e-3", 0.001), (".5", 0.5), ("-2E+4", -20000.0), ("3.", 3.0), ("1e3", 1000.0)],
)
def test_yaml_floats_follow_yaml_1_2(text: str, value: float) -> None:
    data, lines = parse_yaml(f"x: {text}\nn: 10\nm: -7\n", "t.yaml")
    assert isinstance(data["x"], float) and data["x"] == value
    assert isinstance(data["n"], int) and data["n"] == 10
    assert isinstance(data["m"], int) and data["m"] == -7
    assert lines[("n",)] == 2


def test_yaml_1_1_words_are_not_booleans() -> None:
    data, _ = parse_yaml("a: off\nb: yes\nc: true\nd: False\ne: 'true'\n", "t.yaml")
    assert data == {"a": "off", "b": "yes", "c": True, "d": False, "e": "true"}


def test_float_and_int_quirks_through_the_loader(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        GOOD + "optimizer: {kind: adam, learning_rate: 1e-3, epsilon: 1E-8}\ntrain: {epochs: 3}\n"
        "runtime: {mixed_precision: off}\n"
    )
    cfg = load_config(path)
    assert cfg.optimizer.learning_rate == 0.001 and isinstance(cfg.optimizer.learning_rate, float)
    assert cfg.optimizer.epsilon == 1e-8  # type: ignore[union-attr]
    assert cfg.train.epochs == 3 and isinstance(cfg.train.epochs, int)
    assert cfg.runtime.mixed_precision == "off"  # YAML 1.1 would read `off` as False and reject it


# ------------------------------------------------------------------------------------------ --set


def test_set_values_are_parsed_as_yaml(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(GOOD)
    cfg = load_config(
        path,
        [
            "optimizer.learning_rate=3e-3",
            "model.units=[16, 32]",
            "train.epochs=2",
            "runtime.jit_compile=true",
        ],
    )
    assert cfg.optimizer.learning_rate == 0.003 and isinstance(cfg.optimizer.learning_rate, float)
    assert cfg.optimizer.kind == "adam"  # a section the file leaves out gets its default kind
    assert cfg.model.units == [16, 32]  # type: ignore[union-attr]
    assert cfg.train.epochs == 2 and cfg.runtime.jit_compile is True
    shown = runner.invoke(app, ["config", "show", str(path), "--set", "data.batch_size=64", "-s", "seed=7"])
    assert shown.exit_code == 0, shown.output
    resolved = yaml.safe_load(shown.stdout)
    assert resolved["data"]["batch_size"] == 64 and resolved["seed"] == 7


def test_a_bad_set_value_is_revalidated(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(GOOD)
    bad = runner.invoke(app, ["config", "show", str(path), "--set", "train.epochs=-3"])
    assert bad.exit_code == 2
    assert "`train.epochs` must be greater than 0. Received: -3." in bad.stderr
    bad_type = runner.invoke(app, ["config", "show", str(path), "--set", "data.batch_size=[1]"])
    assert bad_type.exit_code == 2 and "`data.batch_size`" in bad_type.stderr
    bad_choice = runner.invoke(app, ["config", "show", str(path), "--set", "runtime.strategy=mirored"])
    assert bad_choice.exit_code == 2 and "did you mean `mirrored`" in bad_choice.stderr


def test_an_unknown_set_key_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(GOOD)
    nested = runner.invoke(app, ["config", "show", str(path), "--set", "train.epoch=3"])
    assert nested.exit_code == 2
    assert "unknown key `train.epoch`; did you mean `epochs`" in nested.stderr
    top = runner.invoke(app, ["config", "show", str(path), "--set", "learning_rate=0.1"])
    assert top.exit_code == 2 and "unknown key `learning_rate`" in top.stderr


@pytest.mark.parametrize(
    ("item", "fragment"),
    [
        ("train.epochs", "expected KEY.PATH=VALUE"),
        ("foo", "expected KEY.PATH=VALUE"),
        (".epochs=3", "empty key"),
        ("model.units=[1, 2", "YAML syntax error"),
        ("model.units={a: 1, a: 2}", "duplicate key `a`"),
    ],
)
def test_malformed_set_exits_2(tmp_path: Path, item: str, fragment: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(GOOD)
    result = runner.invoke(app, ["config", "show", str(path), "--set", item])
    assert result.exit_code == 2, result.output
    assert "problem(s) in --set" in result.stderr
    assert f"--set {item!r}" in result.stderr and fragment in result.stderr, result.stderr


# ------------------------------------------------------------------------------------ show and schema


def test_config_show_round_trips_with_defaults_filled_in(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(GOOD + "runtime: {mixed_precision: off}\n")
    result = runner.invoke(app, ["config", "show", str(path)])
    assert result.exit_code == 0, result.output
    shown = yaml.safe_load(result.stdout)
    # Every section, even those the file leaves out; sweep: and tracking: are off unless given (no defaults).
    assert set(shown) == set(Config.model_fields) - {"sweep", "tracking"}
    optimizer = {"kind": "adam", "learning_rate": 0.001, "weight_decay": 0.0, "beta_1": 0.9, "epsilon": 1e-7}
    assert optimizer.items() <= shown["optimizer"].items()
    assert shown["train"]["epochs"] == 10 and shown["schedule"] == {"kind": "constant"}
    assert shown["data"]["validation_split"] == 0.1 and shown["data"]["test_split"] == 0.2
    assert shown["runtime"]["mixed_precision"] == "off"
    assert list(shown["model"])[0] == "kind"
    again = tmp_path / "again.yaml"
    again.write_text(result.stdout)
    assert load_config(again) == load_config(path)
    assert to_yaml(load_config(again)) == result.stdout


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_validate_and_round_trip(path: Path, tmp_path: Path) -> None:
    cfg = load_config(path)
    assert cfg.name == path.stem
    copy = tmp_path / "copy.yaml"
    copy.write_text(to_yaml(cfg))
    assert load_config(copy) == cfg


def test_there_are_shipped_configs() -> None:
    assert len(list((REPO / "configs").glob("*.yaml"))) >= 4


def _schema_kinds(schema: dict[str, Any], family: str) -> set[str]:
    """The ``kind`` values the schema offers for one section, checked against its discriminator mapping."""
    prop = schema["properties"][family]
    assert prop["discriminator"]["propertyName"] == "kind"
    kinds: set[str] = set()
    for variant in prop["oneOf"]:
        definition = schema["$defs"][variant["$ref"].rsplit("/", 1)[-1]]
        kind = definition["properties"]["kind"]
        value = kind["const"] if "const" in kind else kind["enum"][0]
        assert prop["discriminator"]["mapping"][value] == variant["$ref"]
        assert "kind" in definition["required"] and definition["additionalProperties"] is False
        kinds.add(value)
    assert kinds == set(prop["discriminator"]["mapping"])
    return kinds


def test_config_schema_is_json_with_the_kinds(tmp_path: Path) -> None:
    result = runner.invoke(app, ["config", "schema"])
    assert result.exit_code == 0, result.output
    schema = json.loads(result.stdout)
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert schema["additionalProperties"] is False and {"name", "data", "model"} <= set(schema["required"])
    assert _schema_kinds(schema, "data") == {
        "mnist",
        "fashion_mnist",
        "digits",
        "idx",
        "npz",
        "image_folder",
        "csv",
        "timeseries_csv",
        "text_folder",
    }
    assert _schema_kinds(schema, "model") == {"dense", "cnn", "rnn"}
    assert _schema_kinds(schema, "optimizer") == {"sgd", "adam", "adamw", "rmsprop"}
    assert _schema_kinds(schema, "schedule") == {"constant", "step", "cosine", "one_cycle"}
    strategy = schema["$defs"]["RuntimeConfig"]["properties"]["strategy"]
    assert "mirrored" in strategy["enum"]
    out = tmp_path / "schema.json"
    written = runner.invoke(app, ["config", "schema", "-o", str(out)])
    assert written.exit_code == 0 and json.loads(out.read_text()) == schema


def test_schema_kinds_and_config_kinds_match_the_registries() -> None:
    import dltrain.models  # noqa: F401  (imports keras; registers the model builders)
    from dltrain.config import json_schema
    from dltrain.data import DATASETS
    from dltrain.data.loading import LOADER_MODULES
    from dltrain.models.common import MODELS

    for module in LOADER_MODULES.values():  # the newer kinds register when first used
        importlib.import_module(module)
    from dltrain.train.optimizers import OPTIMIZERS, SCHEDULES

    registries: dict[str, Registry[Any]] = {
        "data": DATASETS, "model": MODELS, "optimizer": OPTIMIZERS, "schedule": SCHEDULES,
    }  # fmt: skip
    assert set(KINDS) == set(registries)
    schema = json_schema()
    for family, registry in registries.items():
        assert registry.names(), family
        assert sorted(KINDS[family]) == registry.names(), family
        assert sorted(_schema_kinds(schema, family)) == registry.names(), family


# ------------------------------------------------------------------------------- fit, registries


@pytest.mark.parametrize("runs_exists", [False, True], ids=["runs-absent", "runs-empty"])
def test_fit_with_a_broken_config_creates_no_run_directory(tmp_path: Path, runs_exists: bool) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("name: t\ndata: {kind: digits}\nmodel: {kind: dense, unitz: 3}\n")
    runs = tmp_path / "runs"
    if runs_exists:
        runs.mkdir()
    result = runner.invoke(app, ["fit", str(path), "--runs-dir", str(runs)])
    assert result.exit_code == 2, result.output
    assert "unknown key `model.unitz`; did you mean `units`" in result.stderr
    assert "run: " not in result.stdout
    assert (list(runs.iterdir()) == []) if runs_exists else not runs.exists()
    overridden = runner.invoke(app, ["fit", str(tmp_path / "c.yaml"), "--runs-dir", str(runs), "-s", "x=1"])
    assert overridden.exit_code == 2
    assert (list(runs.iterdir()) == []) if runs_exists else not runs.exists()


def test_registry_rejects_duplicates_and_lists_known_names() -> None:
    reg: Registry[Any] = Registry("thing")

    def build_b() -> int:
        return 2

    assert reg.register("b")(build_b) is build_b  # the decorator hands the function back
    reg.register("a")(lambda: 1)
    with pytest.raises(ValueError, match="thing 'a' is already registered"):
        reg.register("a")(lambda: 3)
    assert reg.get("a")() == 1  # the first registration stands
    with pytest.raises(KeyError, match="unknown thing 'c'; expected one of: a, b"):
        reg.get("c")
    assert reg.names() == ["a", "b"] and list(reg) == ["a", "b"] and "a" in reg and "c" not in reg


def test_the_dataset_registry_names_its_choices() -> None:
    from dltrain.data import DATASETS

    with pytest.raises(KeyError, match="unknown dataset 'cifar'; expected one of: .*digits, fashion_mnist"):
        DATASETS.get("cifar")
    with pytest.raises(ValueError, match="already registered"):
        DATASETS.register("mnist")(lambda cfg: cfg)
