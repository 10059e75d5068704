"""Experiment configuration: the schema, YAML loading, ``--set`` overrides, validation.

One YAML file describes a whole experiment. It is parsed with PyYAML, overridden with
``--set key.sub=value`` (the value parsed as YAML too), then checked against the dataclasses
below: unknown keys, wrong types and out-of-range values raise :class:`UserError` with a
message that names the file, the key and what is allowed.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml

from .errors import UserError, quote
from .files import open_regular

_INT64 = 2**63                   # NumPy's integers: config integers must fit in int64

Source = Literal["digits", "csv", "idx", "folder", "npz", "mnist", "fashion-mnist", "kmnist"]
Delimiter = Literal["comma", "semicolon", "tab", "whitespace"]
Activation = Literal["relu", "tanh", "sigmoid", "leaky_relu"]
Normalize = Literal["global", "per_feature", "none"]


def _bounds(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
            hi_open: bool = False) -> dict:
    """Field metadata for a numeric range check (inclusive unless ``*_open``)."""
    return {"range": (lo, hi, lo_open, hi_open)}


@dataclass
class DataConfig:
    """Where the data comes from and how it is split (see docs/data.md)."""

    source: Source = "digits"
    # csv (train, test, label_column, delimiter, image_shape, pixel_max, pixel_range);
    # npz (train, test: .npz archives; arrays; or the four .npy *_images/*_labels files)
    train: Optional[str] = None
    test: Optional[str] = None          # also folder: a folder of class folders
    label_column: str = "label"         # first, last, a header name, onehot_first, onehot_last
    delimiter: Optional[Delimiter] = None     # sniffed when not given
    image_shape: Optional[list[int]] = None   # also folder (default [28, 28] there)
    pixel_max: Optional[float] = field(default=None, metadata=_bounds(0, None, lo_open=True))
    pixel_range: Optional[list[float]] = None  # [background, full ink], default [0, pixel_max]
    arrays: Optional[list[str]] = None  # npz: names of [x, y] or [x_train, y_train, x_test, y_test]
    # idx (root or the four files); folder (root: one sub-folder of images per class);
    # mnist, fashion-mnist, kmnist (root: a local copy; else downloaded into cache_dir,
    # verified against the built-in SHA-256 or those of sha256sums, a sha256sum-format file)
    root: Optional[str] = None
    train_images: Optional[str] = None
    train_labels: Optional[str] = None
    test_images: Optional[str] = None
    test_labels: Optional[str] = None
    cache_dir: Optional[str] = None
    sha256sums: Optional[str] = None
    # all sources
    normalize: Normalize = "global"
    val_fraction: float = field(default=0.1, metadata=_bounds(0, 1, hi_open=True))
    test_fraction: float = field(default=0.2, metadata=_bounds(0, 1, lo_open=True, hi_open=True))


@dataclass
class ModelConfig:
    """The MLP: hidden layer widths (any depth, ``[]`` for softmax regression)."""

    hidden: list[int] = field(default_factory=lambda: [128])
    activation: Activation = "relu"
    dtype: Literal["float32", "float64"] = "float32"
    # inverted dropout (Srivastava et al. 2014): the fraction of each hidden layer's outputs
    # zeroed in training, one number for every hidden layer or one per layer
    dropout: Union[float, list[float]] = 0.0
    input_dropout: float = field(default=0.0, metadata=_bounds(0, 1, hi_open=True))

    def dropout_rates(self) -> list[float]:
        """Dropout rate of the input of each weight layer: ``[input_dropout, *hidden rates]``."""
        hidden = self.dropout if isinstance(self.dropout, list) else [self.dropout] * len(self.hidden)
        return [self.input_dropout, *hidden]


@dataclass
class OptimizerConfig:
    """SGD (momentum, Nesterov), Adam (Kingma & Ba 2015 defaults) or AdamW (Loshchilov &
    Hutter 2019). ``weight_decay`` is L2 for sgd and adam, decoupled decay for adamw."""

    name: Literal["sgd", "adam", "adamw"] = "adam"
    lr: float = field(default=1e-3, metadata=_bounds(0, None, lo_open=True))
    momentum: float = field(default=0.9, metadata=_bounds(0, 1, hi_open=True))
    nesterov: bool = False
    weight_decay: float = field(default=0.0, metadata=_bounds(0, None))
    beta1: float = field(default=0.9, metadata=_bounds(0, 1, hi_open=True))
    beta2: float = field(default=0.999, metadata=_bounds(0, 1, hi_open=True))
    eps: float = field(default=1e-8, metadata=_bounds(0, None, lo_open=True))


@dataclass
class EarlyStoppingConfig:
    """Stop when ``train.monitor`` has not improved by ``min_delta`` for ``patience`` epochs."""

    patience: int = field(default=5, metadata=_bounds(1, None))
    min_delta: float = field(default=0.0, metadata=_bounds(0, None))


@dataclass
class ScheduleConfig:
    """Learning-rate schedule, one lr per epoch (see :mod:`softmax_cli.schedules`)."""

    name: Literal["constant", "step", "cosine", "plateau"] = "constant"
    warmup_epochs: int = field(default=0, metadata=_bounds(0, None))
    step_size: int = field(default=10, metadata=_bounds(1, None))      # step
    gamma: float = field(default=0.1, metadata=_bounds(0, 1, lo_open=True, hi_open=True))  # step
    min_lr: float = field(default=0.0, metadata=_bounds(0, None))       # cosine, plateau
    factor: float = field(default=0.1, metadata=_bounds(0, 1, lo_open=True, hi_open=True))  # plateau
    patience: int = field(default=5, metadata=_bounds(1, None))         # plateau


@dataclass
class AugmentConfig:
    """Random distortions of each training batch (see :mod:`softmax_cli.augment`); 0 is off."""

    shift: float = field(default=0.0, metadata=_bounds(0, None))        # pixels, each axis
    rotate: float = field(default=0.0, metadata=_bounds(0, 180))        # degrees, either way
    scale: float = field(default=0.0, metadata=_bounds(0, 1, hi_open=True))  # zoom in [1-s, 1+s]
    # sane maxima (pixels): a Gaussian below 0.01 pixel smooths nothing (and its 1 / sigma^2
    # overflows), one of 100 pixels is wider than any image, and its kernel grows with sigma
    elastic_alpha: float = field(default=0.0, metadata=_bounds(0, 1000))  # pixels
    elastic_sigma: float = field(default=4.0, metadata=_bounds(0.01, 100))  # pixels


@dataclass
class TrainConfig:
    epochs: int = field(default=30, metadata=_bounds(1, None))
    batch_size: int = field(default=64, metadata=_bounds(1, None))
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    label_smoothing: float = field(default=0.0, metadata=_bounds(0, 1, hi_open=True))
    max_norm: Optional[float] = field(default=None, metadata=_bounds(0, None, lo_open=True))
    augment: Optional[AugmentConfig] = None
    monitor: Literal["val_loss", "val_acc"] = "val_loss"
    early_stopping: Optional[EarlyStoppingConfig] = None
    # after training, fit one temperature T on the validation logits (Guo et al. 2017) and
    # answer softmax(z / T) from then on; null: off. Needs a validation split (else skipped).
    calibration: Optional[Literal["temperature"]] = "temperature"


@dataclass
class OutputConfig:
    dir: str = "runs"


@dataclass
class Config:
    """A whole experiment. ``name`` defaults to the YAML file's stem."""

    name: Optional[str] = None
    seed: int = field(default=0, metadata=_bounds(0, 2**32 - 1))
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def to_dict(self) -> dict:
        """The config as plain YAML-ready data (lists, dicts, numbers, strings)."""
        return dataclasses.asdict(self)


_PATH_KEYS = ("train", "test", "root", "train_images", "train_labels", "test_images", "test_labels",
              "cache_dir", "sha256sums")
_NAMED = ("root", "cache_dir", "sha256sums")
_IDX_FILES = ("train_images", "train_labels", "test_images", "test_labels")
# the optional data keys each source reads; any other one set is refused
_SOURCE_KEYS = {
    "digits": (),
    "csv": ("train", "test", "image_shape", "pixel_max", "pixel_range", "delimiter"),
    "npz": ("train", "test", *_IDX_FILES, "image_shape", "pixel_max", "pixel_range", "arrays"),
    "idx": ("root", *_IDX_FILES),
    "folder": ("root", "test", "image_shape"),
    "mnist": _NAMED,
    "fashion-mnist": _NAMED,
    "kmnist": _NAMED,
}
LABEL_COLUMNS = ("first", "last", "onehot_first", "onehot_last")   # or a header name
FOLDER_IMAGE_SHAPE = [28, 28]   # data.image_shape of data.source folder when not given
MAX_IMAGE_PIXELS = 2**24        # data.image_shape: 4096 x 4096 at most


def _resolved(value: str, where: str) -> str:
    """A data path made absolute: ``~`` and ``~user`` expanded, resolved against the cwd.

    Raises:
        UserError: ``~user`` names no user with a home directory (naming ``where``).
    """
    try:
        return str(Path(value).expanduser().resolve())
    except RuntimeError:        # pathlib: "Could not determine home directory."
        user = value.split("/", 1)[0]
        raise UserError(f"{where}: {quote(value)}: cannot expand {quote(user)}, no such user's home "
                        f"directory") from None


def _check_data(d: DataConfig) -> None:
    """Contradictory or missing data settings (each source's keys: :data:`_SOURCE_KEYS`)."""
    for key in dict.fromkeys(k for keys in _SOURCE_KEYS.values() for k in keys):
        if key not in _SOURCE_KEYS[d.source] and getattr(d, key) is not None:
            raise UserError(f"data.{key}: not used with data.source '{d.source}'")
    if d.source == "csv" and d.train is None:
        raise UserError("data.train: required with data.source 'csv' (a .csv, .tsv or .txt file, or .gz)")
    if d.source == "folder" and d.root is None:
        raise UserError("data.root: required with data.source 'folder' "
                        "(a folder holding one sub-folder of images per class)")
    if d.image_shape is not None:
        if len(d.image_shape) != 2 or min(d.image_shape) < 1:
            raise UserError(f"data.image_shape: expected [height, width] of positive integers, "
                            f"got {d.image_shape}")
        if d.image_shape[0] * d.image_shape[1] > MAX_IMAGE_PIXELS:
            raise UserError(f"data.image_shape: expected at most {MAX_IMAGE_PIXELS:,} pixels, got {d.image_shape}")
    if d.source in ("idx", "npz"):
        _check_file_pairs(d)
    if d.label_column in ("onehot_first", "onehot_last") and d.source == "csv" and d.image_shape is None:
        raise UserError(f"data.label_column: {d.label_column} needs data.image_shape (the label columns are "
                        f"those beyond its pixels)")
    if d.pixel_range is not None:
        low_high = d.pixel_range
        if len(low_high) != 2 or not all(map(math.isfinite, low_high)) or low_high[0] >= low_high[1]:
            raise UserError(f"data.pixel_range: expected [background, full ink], two finite numbers, the first "
                            f"below the second, got {quote(low_high)}")
        if d.pixel_max is not None:
            raise UserError("data.pixel_range: give data.pixel_range or data.pixel_max, not both")
    if d.arrays is not None and (len(d.arrays) not in (2, 4) or d.train is None):
        raise UserError(f"data.arrays: expected the names of [x, y] or [x_train, y_train, x_test, y_test] "
                        f"in the data.train archive, got {quote(d.arrays)}")


def _check_file_pairs(d: DataConfig) -> None:
    """idx: data.root or the train pair; npz: data.train or the train pair; test pairs whole."""
    pair = (d.train_images, d.train_labels)
    whole = d.root if d.source == "idx" else d.train
    if whole is None and None in pair:
        key = "root" if d.source == "idx" else "train"
        raise UserError(f"data.{key}: required with data.source '{d.source}' "
                        f"(or give data.train_images and data.train_labels)")
    if d.source == "npz" and d.train is not None and any(v is not None for v in (*pair, d.test_images)):
        raise UserError("data.train_images: give data.train (an .npz archive) or the .npy files "
                        "data.train_images and data.train_labels, not both")
    if (d.test_images is None) != (d.test_labels is None):
        raise UserError("data.test_images: give both data.test_images and data.test_labels, or neither")
    if d.source == "npz" and d.test is not None and d.train is None:
        raise UserError("data.test: an .npz test archive goes with a data.train archive; with .npy files "
                        "give data.test_images and data.test_labels")


# --------------------------------------------------------------------------- type checking
def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(str(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        null = " or null" if type(None) in typing.get_args(tp) else ""
        return " or ".join(_describe(a) for a in inner) + null
    if origin is list:
        item = typing.get_args(tp)[0]
        if dataclasses.is_dataclass(item):
            return "a list of mappings"
        return "a list of " + {int: "integers", float: "numbers", str: "strings", Any: "values"}[item]
    if dataclasses.is_dataclass(tp) or tp is dict:
        return "a mapping"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}[tp]


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it in canonical form."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        for alternative in inner[:-1]:
            try:
                return _coerce(value, alternative, key)
            except UserError:
                continue
        try:
            return _coerce(value, inner[-1], key)
        except UserError:
            if len(inner) == 1:
                raise
            raise UserError(f"{key}: expected {_describe(tp)}, got {quote(value)}") from None
    if dataclasses.is_dataclass(tp):
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise UserError(f"{key}: expected a mapping, got {quote(value)}")
        return _build(tp, value, key)
    if tp is Any:                   # any YAML value, which its user checks (a search space's choices)
        return value
    if tp is dict:                  # a mapping whose contents its user checks (e.g. a generator state)
        if not isinstance(value, dict):
            raise UserError(f"{key}: expected a mapping, got {quote(value)}")
        return value
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise UserError(f"{key}: expected {_describe(tp)}, got {quote(value)}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise UserError(f"{key}: expected {_describe(tp)}, got {quote(value)}")
        (item,) = typing.get_args(tp)
        return [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if not isinstance(value, bool):
            raise UserError(f"{key}: expected true or false, got {quote(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"{key}: expected an integer, got {quote(value)}")
        if not -_INT64 <= value < _INT64:
            raise UserError(f"{key}: expected an integer of at most 19 digits, got {quote(value)}")
        return value
    if tp is float:
        try:
            finite = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
        except OverflowError:          # an integer beyond float's range
            finite = False
        if not finite:
            raise UserError(f"{key}: expected a finite number, got {quote(value)}")
        return float(value)
    if tp is str:
        if not isinstance(value, str) or not value or "\0" in value:
            raise UserError(f"{key}: expected a non-empty string without NUL bytes, got {quote(value)}")
        return value
    raise TypeError(f"unsupported annotation {tp!r}")  # a bug in the schema, not user input


def _check_range(value: Any, bounds: tuple, key: str) -> None:
    lo, hi, lo_open, hi_open = bounds
    if value is None:
        return
    ok = (lo is None or (value > lo if lo_open else value >= lo)) and (
        hi is None or (value < hi if hi_open else value <= hi))
    if not ok:
        left = "" if lo is None else (f"> {lo}" if lo_open else f">= {lo}")
        right = "" if hi is None else (f"< {hi}" if hi_open else f"<= {hi}")
        raise UserError(f"{key}: expected a value {' and '.join(p for p in (left, right) if p)}, "
                        f"got {quote(value)}")


def _nested_home(cls: type, key: str, prefix: str = "") -> list[str]:
    """Where ``key`` lives below ``cls`` (e.g. ``lr`` -> ``optimizer.lr`` under TrainConfig)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        inner = [a for a in (typing.get_args(hints[f.name]) or (hints[f.name],)) if dataclasses.is_dataclass(a)]
        for sub in inner:
            path = f"{prefix}{f.name}."
            if key in {g.name for g in dataclasses.fields(sub)}:
                return [path + key]
            deeper = _nested_home(sub, key, path)
            if deeper:
                return deeper
    return []


def _build(cls: type, raw: dict, prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in raw.items():
        full = f"{prefix}.{key}" if prefix else str(key)
        if key not in fields:
            close = (difflib.get_close_matches(str(key), list(fields), n=1)
                     or _nested_home(cls, str(key), f"{prefix}." if prefix else "")
                     or _nested_home(Config, str(key)))   # e.g. train.early_stopping.monitor
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise UserError(f"{full}: unknown key{hint}; allowed: {', '.join(fields)}")
        kwargs[key] = _coerce(value, hints[key], full)
        if "range" in fields[key].metadata:
            _check_range(kwargs[key], fields[key].metadata["range"], full)
    # a field without a default is required (none of the config's own; the engine's saved state)
    missing = [name for name, f in fields.items() if name not in raw
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise UserError(f"{prefix or cls.__name__}: lacks {', '.join(missing)}; expected the keys "
                        f"{', '.join(fields)}")
    return cls(**kwargs)


# --------------------------------------------------------------------------- strict YAML
MAX_CONFIG_BYTES = 2**20    # a config is a few hundred bytes; PyYAML takes ~150x a file's size in memory

_BOOL, _INT, _FLOAT = "tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
# the YAML 1.2 core schema (https://yaml.org/spec/1.2.2/#1032-tag-resolution): no yes/no/on/off
# booleans, no base 60 (1:30), no 1_000, no octal 010 (it is ten); 1e-3 is a float
_CORE_RESOLVERS = [
    (_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")),
    (_INT, re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"), list("-+0123456789")),
    (_FLOAT, re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
                        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"), list("-+.0123456789")),
]


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A mapping names the same key twice (PyYAML alone keeps the last one silently)."""


class StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader reading plain scalars as YAML 1.2's core schema does, and refusing
    a key given twice in one mapping (:class:`DuplicateKeyError`, both lines named)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            first: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    earlier = first.setdefault(key, key_node)
                except TypeError:            # an unhashable key: PyYAML's own error follows
                    continue
                if earlier is not key_node:
                    raise DuplicateKeyError(
                        None, None, f"duplicate key {quote(key)} (first given at line "
                                    f"{earlier.start_mark.line + 1}, column {earlier.start_mark.column + 1})",
                        key_node.start_mark)
        return super().construct_mapping(node, deep)

    def construct_yaml_int(self, node):
        text = self.construct_scalar(node)
        try:
            return int(text, 0) if text[:2] in ("0o", "0x") else int(text, 10)
        except ValueError as exc:   # an explicit !!int that is none, or more than 4300 digits
            raise yaml.constructor.ConstructorError(None, None, f"cannot read the integer: {exc}",
                                                    node.start_mark) from None


StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_BOOL, _INT, _FLOAT)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
for _tag, _rx, _first in _CORE_RESOLVERS:
    StrictLoader.add_implicit_resolver(_tag, _rx, _first)
StrictLoader.add_constructor(_INT, StrictLoader.construct_yaml_int)


class _Dumper(yaml.SafeDumper):
    """Quotes a string that YAML 1.1 or 1.2 would read as something else (``yes``, ``1e3``)."""


for _tag, _rx, _first in _CORE_RESOLVERS:
    _Dumper.add_implicit_resolver(_tag, _rx, _first)


def load_yaml(text: str):
    """Parse one YAML document with :class:`StrictLoader`.

    Raises:
        yaml.YAMLError: a syntax error, a duplicate key (:class:`DuplicateKeyError`).
        RecursionError: nested too deeply.
    """
    return yaml.load(text, Loader=StrictLoader)


def dump_yaml(data) -> str:
    """``data`` as YAML that :func:`load_yaml` (and YAML 1.1 readers) read back unchanged."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """``line L, column C: <problem>`` of a PyYAML error (a duplicate key is no syntax error)."""
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    kind = "" if isinstance(exc, yaml.constructor.ConstructorError) else "YAML syntax error: "
    return f"{where}{kind}{problem}"


# --------------------------------------------------------------------------- public API
def parse_overrides(items: list[str]) -> list[tuple[list[str], Any]]:
    """Parse ``--set key.sub=value`` strings into ``(path, value)`` pairs.

    The value is parsed as YAML (:func:`load_yaml`), so ``model.hidden=[256,128]`` gives a
    list; an empty value is null (refused by :func:`load_config` where the key takes none).

    Raises:
        UserError: an item without ``=``, an empty key, or a value that is not valid YAML.
    """
    out = []
    for item in items:
        key, sep, text = item.partition("=")
        path = key.strip().split(".")
        if not sep or not all(path):
            raise UserError(f"--set {item}: expected KEY.SUB=VALUE, e.g. train.epochs=10")
        try:
            value = load_yaml(text) if text.strip() else None
        except RecursionError:
            raise UserError(f"--set {key}=...: the value is nested too deeply to read") from None
        except yaml.YAMLError as exc:
            raise UserError(f"--set {item}: the value is not valid YAML ({_yaml_problem(exc)})") from None
        out.append((path, value))
    return out


def _field_type(path: list[str]) -> Any:
    """The annotation of the config key ``path`` (``["train", "epochs"]``), None if there is none."""
    tp: Any = Config
    for part in path:
        inner = [a for a in (typing.get_args(tp) or (tp,)) if dataclasses.is_dataclass(a)]
        if not inner:
            return None
        hints = typing.get_type_hints(inner[0])
        if part not in hints:
            return None
        tp = hints[part]
    return tp


def _accepts_null(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType) and type(None) in typing.get_args(tp)


def _check_null_overrides(parsed: list[tuple[list[str], Any]], items: list[str]) -> None:
    """Refuse ``--set KEY=`` (or ``=null``) for a key that takes no null: PyYAML reads it as
    null, which for a section (``--set train=``) would silently reset it to its defaults."""
    for (path, value), item in zip(parsed, items):
        tp = _field_type(path)
        if value is None and tp is not None and not _accepts_null(tp):
            what = "a section" if dataclasses.is_dataclass(tp) else _describe(tp)
            raise UserError(f"--set {quote(item)[1:-1]}: an empty value is null, and {'.'.join(path)} takes "
                            f"{what}, not null; give a value (e.g. --set train.epochs=10)")


def blame_override(exc: UserError, items: list[str] | None) -> UserError:
    """``exc`` blamed on the ``--set`` item that set its key, when one did.

    The key is ``exc.key`` when the error has one (e.g. a split that ``data.val_fraction``
    makes impossible), else the ``key:`` the message begins with (after ``origin: ``).
    The key and the item's key match when one is a prefix of the other (``--set
    trian.epochs=3`` and ``trian: unknown key``; ``--set train={...}`` and
    ``train.optimizer.momentum``); the last such item is blamed.
    """
    if not items:
        return exc
    message = str(exc)
    key = getattr(exc, "key", None) or message.split(": ", 1)[0]
    parts = re.sub(r"\[\d+\]", "", key).split(".")
    for item in reversed(items):
        path = item.partition("=")[0].strip().split(".")
        n = min(len(path), len(parts))
        if path[:n] == parts[:n]:
            return UserError(f"--set {quote(item)[1:-1]}: {message}")
    return exc


def apply_overrides(raw: dict, overrides: list[tuple[list[str], Any]]) -> dict:
    """Return a copy of ``raw`` with each ``(path, value)`` set, creating mappings as needed.

    Raises:
        UserError: when a path goes through a key whose value is not a mapping.
    """
    raw = copy.deepcopy(raw)
    for path, value in overrides:
        node = raw
        for i, part in enumerate(path[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise UserError(f"--set {'.'.join(path)}: '{'.'.join(path[:i + 1])}' is not a mapping")
            node = child
        node[path[-1]] = value
    return raw


def config_from_dict(raw: Any, origin: str = "config", default_name: str = "run") -> Config:
    """Validate a parsed YAML document and return a :class:`Config`.

    Relative data paths are resolved against the current working directory, so the
    resolved config saved with a run (and in its checkpoints) works from anywhere.

    Args:
        raw: the document (a mapping, or ``None`` for an empty file: all defaults).
        origin: the file name used in error messages.
        default_name: the run name used when the document has no ``name``.

    Raises:
        UserError: ``"<origin>: <key>: <what was expected>, got <value>"`` for unknown keys
            (with the closest valid key), wrong types, out-of-range values and
            contradictory settings (e.g. ``data.root`` with ``source: csv``).
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UserError(f"{origin}: expected a mapping of keys at the top level, got {type(raw).__name__}")
    try:
        cfg = _build(Config, raw, "")
        if cfg.name is None:         # checked as a given name is (a file named '..yaml': '.')
            cfg.name = default_name
        _check_consistency(cfg)
    except UserError as exc:
        raise UserError(f"{origin}: {exc}") from None
    if cfg.data.source == "folder" and cfg.data.image_shape is None:
        cfg.data.image_shape = list(FOLDER_IMAGE_SHAPE)
    for key in _PATH_KEYS:
        value = getattr(cfg.data, key)
        if value is not None:
            setattr(cfg.data, key, _resolved(value, f"{origin}: data.{key}"))
    return cfg


def _check_consistency(cfg: Config) -> None:
    d = cfg.data
    if cfg.name is not None and ("/" in cfg.name or cfg.name in (".", "..") or len(cfg.name.encode()) > 200):
        raise UserError(f"name: expected a plain directory name of at most 200 bytes, got {cfg.name[:40]!r}"
                        f"{'...' if len(cfg.name) > 40 else ''} (without a name: key, the config "
                        f"file's name)")
    _check_data(d)
    if any(h < 1 for h in cfg.model.hidden):
        raise UserError(f"model.hidden: expected positive layer widths, got {cfg.model.hidden}")
    if cfg.train.early_stopping is not None and d.val_fraction == 0:
        raise UserError("train.early_stopping: needs a validation split (data.val_fraction > 0)")
    m = cfg.model
    if isinstance(m.dropout, list) and len(m.dropout) != len(m.hidden):
        raise UserError(f"model.dropout: expected one rate per hidden layer ({len(m.hidden)}), "
                        f"or one number for all, got {m.dropout}")
    if any(not 0 <= r < 1 for r in m.dropout_rates()):
        raise UserError(f"model.dropout: expected rates >= 0 and < 1, got {quote(m.dropout)}")



def read_yaml_file(path: str | Path, kind: str = "config file", expected: str = "a YAML config file") -> Any:
    """Read and parse one YAML file as a config is read (a search space too).

    The file is read as YAML 1.2 (:class:`StrictLoader`: duplicate keys refused, ``1:30``
    and ``yes`` are strings); a file larger than :data:`MAX_CONFIG_BYTES` is refused before
    it is parsed (PyYAML needs ~150 times a file's size in memory).

    Args:
        kind, expected: what the file is, and what was expected instead, in messages.

    Raises:
        UserError: naming ``path``: the file is missing, unreadable (permission denied), not
            a regular file, too large, not UTF-8, nested too deeply, or is not valid YAML
            (line and column given), or names a key twice (both lines).
    """
    path = Path(path)
    with open_regular(path, kind, expected) as f:
        try:
            data = f.read(MAX_CONFIG_BYTES + 1)
        except OSError as exc:
            raise UserError(f"{path}: cannot read {kind} ({exc.strerror or exc})") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise UserError(f"{path}: larger than {MAX_CONFIG_BYTES // 2**20} MiB, too large for a {kind} "
                        f"(such a file is a few hundred bytes)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: cannot read {kind} ({exc})") from None
    try:
        return load_yaml(text)
    except RecursionError:
        raise UserError(f"{path}: YAML nested too deeply to read") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: {_yaml_problem(exc)}") from None


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Read a YAML config file (:func:`read_yaml_file`), apply ``--set`` overrides and validate it.

    Raises:
        UserError: the file cannot be read or parsed (see :func:`read_yaml_file`), or fails
            validation (see :func:`config_from_dict`); a bad value that came from ``--set``
            is named by that item (``--set train.epochs=1.5: ...``), and so is ``--set KEY=``
            for a key that takes no null.
    """
    path = Path(path)
    raw = read_yaml_file(path)
    parsed = []
    if overrides:
        if raw is None:
            raw = {}
        if isinstance(raw, dict):
            parsed = parse_overrides(overrides)
            _check_null_overrides(parsed, overrides)
            raw = apply_overrides(raw, parsed)
    try:
        return config_from_dict(raw, origin=str(path), default_name=path.stem)
    except UserError as exc:
        # a value that came from --set is blamed on the --set item, not on the file
        inner = UserError(str(exc).removeprefix(f"{path}: "))
        blamed = blame_override(inner, overrides if parsed else None)
        if blamed is not inner:
            raise blamed from None
        raise
