"""Config loading, --set overrides and validation (the error paths run through the CLI in
test_bad_inputs.py; here the meaning of valid input)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import CONFIGS
from softmax_cli.config import Config, apply_overrides, config_from_dict, load_config, parse_overrides
from softmax_cli.errors import UserError


def test_shipped_configs_load():
    digits = load_config(CONFIGS / "digits.yaml")
    assert digits.name == "digits" and digits.data.source == "digits"
    mnist = load_config(CONFIGS / "mnist.yaml")
    assert mnist.data.source == "mnist" and mnist.data.root is None
    local = load_config(CONFIGS / "mnist.yaml", ["data.root=some/copy"])
    assert Path(local.data.root).is_absolute()


def test_overrides_parse_values_as_yaml_and_create_mappings():
    pairs = parse_overrides(["model.hidden=[256, 128]", "train.early_stopping.patience=3",
                             "train.optimizer.nesterov=true", "name=x=y"])
    assert pairs == [(["model", "hidden"], [256, 128]), (["train", "early_stopping", "patience"], 3),
                     (["train", "optimizer", "nesterov"], True), (["name"], "x=y")]
    raw = apply_overrides({"train": {"epochs": 5}}, pairs)
    assert raw["train"] == {"epochs": 5, "early_stopping": {"patience": 3}, "optimizer": {"nesterov": True}}
    cfg = config_from_dict(raw)
    assert cfg.model.hidden == [256, 128] and cfg.train.early_stopping.patience == 3
    assert cfg.train.early_stopping.min_delta == 0.0


def test_override_does_not_modify_the_input():
    raw = {"train": {"epochs": 5}}
    apply_overrides(raw, [(["train", "epochs"], 9)])
    assert raw == {"train": {"epochs": 5}}


def test_defaults_name_from_file_and_numbers_written_without_a_dot(tmp_path):
    path = tmp_path / "my-exp.yaml"
    path.write_text("train:\n  optimizer: {lr: 1e-3, weight_decay: 5e-4}\n")   # PyYAML reads these as str
    cfg = load_config(path)
    assert cfg.name == "my-exp"
    assert cfg.train.optimizer.lr == 0.001 and cfg.train.optimizer.weight_decay == 0.0005
    assert cfg == load_config(path)


@pytest.mark.parametrize("file_name", ["..yaml", "...yaml"])
def test_a_run_name_taken_from_the_file_name_is_checked_too(tmp_path, file_name):
    # '..yaml' would otherwise name its run '.' (runs/.-2) and '...yaml' '..' (runs/..-2)
    (tmp_path / file_name).write_text("data: {source: digits}\n")
    with pytest.raises(UserError, match=r"name: expected a plain directory name .* \(without a name: key"):
        load_config(tmp_path / file_name)


def test_empty_file_gives_all_defaults(tmp_path):
    (tmp_path / "empty.yaml").write_text("")
    cfg = load_config(tmp_path / "empty.yaml")
    assert cfg.to_dict() == {**Config().to_dict(), "name": "empty"}


def test_relative_paths_resolve_against_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = config_from_dict({"data": {"source": "csv", "train": "sub/train.csv"}})
    assert cfg.data.train == str(tmp_path / "sub" / "train.csv")


def test_resolved_config_round_trips():
    cfg = load_config(CONFIGS / "mnist.yaml", ["model.hidden=[8]"])
    assert config_from_dict(cfg.to_dict()) == cfg


def test_error_names_origin_key_and_allowed_values():
    with pytest.raises(UserError, match=r"^exp.yaml: model.activation: expected one of relu, tanh, "
                                        r"sigmoid, leaky_relu, got 'swish'$"):
        config_from_dict({"model": {"activation": "swish"}}, origin="exp.yaml")
    with pytest.raises(UserError, match=r"train.optimizer.lr: expected a value > 0, got 0.0"):
        config_from_dict({"train": {"optimizer": {"lr": 0}}})
