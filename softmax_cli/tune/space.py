"""The search space: SPACE.yaml read and checked as a config is, and turned into Optuna's distributions.

A space file maps dotted config keys to distributions (Optuna's three kinds)::

    train.optimizer.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
    model.hidden: {type: categorical, choices: [[256], [512], [800, 800]]}
    model.dropout: {type: float, low: 0.0, high: 0.5}
    train.batch_size: {type: int, low: 32, high: 256, log: true}

It is read as a config file is (:func:`softmax_cli.config.read_yaml_file`: strict YAML 1.2,
size limit), each distribution is built by the config's schema machinery (an unknown key
gets the closest valid one), and every value a distribution can give is checked against the
config's own schema by setting it in the config and validating that (:func:`_fit`): a key the
config does not have, a float for an integer key, a bound outside the key's range are
refused with the config's message, before anything runs. What is left to a trial is a
combination of values that do not fit together (e.g. ``model.dropout`` as a list of one rate
per layer with a sampled ``model.hidden`` of another depth): that trial fails, the sweep goes on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

from ..config import (Config, _bounds, _build, _field_type, apply_overrides, config_from_dict,
                      read_yaml_file)
from ..errors import UserError, quote

#: keys ``softmax tune`` sets for every trial itself, which a space may not search
RESERVED = {"name": "each trial's run directory name", "output": "the study's directory",
            "train.monitor": "--metric"}
KIND = "search space file"


@dataclass
class Distribution:
    """One entry of a space file, as Optuna's distributions take it.

    ``float`` and ``int``: a value in ``[low, high]``, sampled on a log scale with ``log``
    (``low > 0``), or on a grid of ``step``; ``categorical``: one of ``choices`` (any YAML
    values the key takes: numbers, strings, lists such as ``[256, 256]``, mappings).
    """

    type: Literal["float", "int", "categorical"]
    low: Optional[Union[int, float]] = None
    high: Optional[Union[int, float]] = None
    log: bool = False
    step: Optional[Union[int, float]] = field(default=None, metadata=_bounds(0, None, lo_open=True))
    choices: Optional[list[Any]] = None


@dataclass
class Param:
    """A searched config key (``train.optimizer.lr``) and its distribution."""

    key: str
    dist: Distribution

    @property
    def path(self) -> list[str]:
        return self.key.split(".")

    def encoded_choices(self) -> list:
        """The categorical choices as Optuna stores them: a number, string, bool or null as
        itself, a list or mapping as its JSON text (``"[256, 256]"``)."""
        return [c if c is None or isinstance(c, (bool, int, float, str)) else json.dumps(c)
                for c in self.dist.choices]

    def distribution(self):
        """The ``optuna.distributions`` object of this parameter."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        d = self.dist
        if d.type == "float":
            return FloatDistribution(float(d.low), float(d.high), log=d.log,
                                     step=None if d.step is None else float(d.step))
        if d.type == "int":
            return IntDistribution(int(d.low), int(d.high), log=d.log, step=1 if d.step is None else int(d.step))
        return CategoricalDistribution(self.encoded_choices())

    def decode(self, value: Any) -> Any:
        """The config value of a sampled ``value`` (a categorical choice back from its JSON text)."""
        if self.dist.type == "categorical":
            return self.dist.choices[self.encoded_choices().index(value)]
        return value


@dataclass
class Space:
    """The parameters of a search, in the order of the space file."""

    params: list[Param]
    path: str = ""

    def distributions(self) -> dict:
        """``{key: optuna distribution}``, the form Optuna's ``ask`` and Ray's OptunaSearch take."""
        return {p.key: p.distribution() for p in self.params}

    def decode(self, sampled: dict[str, Any]) -> dict[str, Any]:
        """``{key: config value}`` of Optuna's sampled ``{key: value}``."""
        return {p.key: p.decode(sampled[p.key]) for p in self.params}

    def apply(self, raw: dict, values: dict[str, Any]) -> dict:
        """A copy of the config dict ``raw`` with each ``values[key]`` set at its dotted key."""
        return apply_overrides(raw, [(key.split("."), value) for key, value in values.items()])

    def to_dict(self) -> dict:
        """The space as its file gives it (what a study records, to know it again)."""
        return {p.key: {k: v for k, v in vars(p.dist).items() if v is not None and v is not False}
                for p in self.params}

    def describe(self, values: dict[str, Any]) -> str:
        """``key=value`` pairs of ``values`` on one line, values as YAML writes them inline."""
        return "  ".join(f"{k}={_inline(v)}" for k, v in values.items())


def _inline(value: Any) -> str:
    """A config value on one line: a float to 4 digits, a list or mapping in flow style (JSON)."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def load_space(path: str | Path, cfg: Config) -> Space:
    """Read the space file ``path`` and check it against the config ``cfg`` it searches.

    Raises:
        UserError: ``PATH: KEY: ...`` (exit 2): the file cannot be read or is not valid
            YAML; it is not a mapping of dotted keys to distributions; a distribution has an
            unknown key, lacks a bound or choices, has ``low >= high``, ``log`` with
            ``low <= 0`` or with ``step``; a key is no key of the config, is set by tune
            itself (:data:`RESERVED`), or overlaps another; a bound or choice does not fit
            the key's type or range (the config's own message, e.g. ``model.dropout.high:
            expected rates >= 0 and < 1, got 1.5``).
    """
    raw = read_yaml_file(path, KIND, "a YAML search space file")
    if not isinstance(raw, dict) or not raw:
        raise UserError(f"{path}: expected a mapping of config keys to distributions, e.g. "
                        f"'train.optimizer.lr: {{type: float, low: 1.0e-4, high: 1.0e-2, log: true}}', "
                        f"got {quote(raw)}")
    base = cfg.to_dict()
    params = []
    for key, spec in raw.items():
        try:
            params.append(_param(key, spec, base))
        except UserError as exc:
            raise UserError(f"{path}: {exc}") from None
    keys = [p.key for p in params]
    for key in keys:
        inside = next((k for k in keys if k.startswith(key + ".")), None)
        if inside is not None:
            raise UserError(f"{path}: {inside}: lies inside {key}, which is searched too; search one of them")
    return Space(params, str(path))


def _param(key: Any, spec: Any, base: dict) -> Param:
    """One entry of the space file, checked (messages without the file name)."""
    if not isinstance(key, str) or not all(key.split(".")):
        raise UserError(f"{quote(key)}: expected a dotted config key such as train.optimizer.lr")
    for reserved, why in RESERVED.items():
        if key == reserved or key.startswith(reserved + "."):
            raise UserError(f"{key}: set by softmax tune for every trial ({why}); it cannot be searched")
    if not isinstance(spec, dict):
        raise UserError(f"{key}: expected a distribution such as {{type: float, low: 0.0, high: 0.5}}, "
                        f"got {quote(spec)}")
    dist = _build(Distribution, spec, key)
    _check_distribution(key, dist)
    param = Param(key, dist)
    if dist.type == "categorical":
        values = {f"choices[{i}]": c for i, c in enumerate(dist.choices)}
    else:
        cast = float if dist.type == "float" else int
        values = {"low": cast(dist.low), "high": cast(dist.high)}
    for place, value in values.items():
        _fit(base, param, place, value)
    if dist.type == "categorical":
        encoded = param.encoded_choices()
        for i, e in enumerate(encoded):
            if encoded.index(e) != i:
                raise UserError(f"{key}.choices[{i}]: repeats choices[{encoded.index(e)}] ({quote(dist.choices[i])})")
    return param


def _check_distribution(key: str, d: Distribution) -> None:
    """The rules of Optuna's distributions, checked with messages that name the key."""
    numeric = ("low", "high", "log", "step")
    if d.type == "categorical":
        given = [k for k in numeric if getattr(d, k) not in (None, False)]
        if given:
            raise UserError(f"{key}.{given[0]}: not used with type categorical (give choices)")
        if not d.choices:
            raise UserError(f"{key}.choices: expected a non-empty list of values, got {quote(d.choices)}")
        return
    if d.choices is not None:
        raise UserError(f"{key}.choices: not used with type {d.type} (give low and high)")
    for bound in ("low", "high"):
        value = getattr(d, bound)
        if value is None:
            raise UserError(f"{key}: lacks {bound}; type {d.type} takes low and high")
        if d.type == "int" and not isinstance(value, int):
            raise UserError(f"{key}.{bound}: expected an integer (type int), got {quote(value)}")
    if d.type == "int" and d.step is not None and not isinstance(d.step, int):
        raise UserError(f"{key}.step: expected an integer (type int), got {quote(d.step)}")
    if not d.low < d.high:
        raise UserError(f"{key}.high: expected a value > low ({d.low}), got {quote(d.high)}")
    if d.log and d.low <= 0:
        raise UserError(f"{key}.low: expected a value > 0 with log: true, got {quote(d.low)}")
    if d.log and d.step is not None:
        raise UserError(f"{key}.step: not used with log: true (a log scale has no fixed step)")


def _fit(base: dict, param: Param, place: str, value: Any) -> None:
    """Check that the config ``base`` with ``value`` at ``param.key`` is a valid config.

    Raises:
        UserError: the config's own message: as it is for a key the config does not have
            (``train.optimizer.lrr: unknown key (did you mean 'lr'?); ...``), else with the
            key replaced by the place in the space file when the message is about that key
            (``model.dropout.high: expected rates >= 0 and < 1, got 1.5``) or put after it.
    """
    origin = "space"
    try:
        config_from_dict(apply_overrides(base, [(param.path, value)]), origin=origin)
        return
    except UserError as exc:
        inner = str(exc).removeprefix(f"{origin}: ")
    if _field_type(param.path) is None:
        raise UserError(inner)
    if inner.startswith(param.key + "["):               # model.hidden[0]: expected an integer
        raise UserError(f"{param.key}.{place}{inner[len(param.key):]}")
    if inner.startswith(param.key + ":"):
        inner = inner[len(param.key) + 1:].lstrip()
    raise UserError(f"{param.key}.{place}: {inner}")
