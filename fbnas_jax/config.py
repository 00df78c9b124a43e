"""Experiment configuration: frozen dataclasses, loaded from YAML files in ``configs/``.

A config file has up to three sections, ``model``, ``data`` and ``train``; every key is
optional and defaults to the values below. Unknown sections or keys are errors (with a
suggestion), never silently ignored. String values may reference environment variables
(``source: ${FBNAS_CIFAR10_ARCHIVE}``), expanded at load time, so no path is hard-coded.
Command-line overrides use dotted keys: ``train.epochs=2 model.bn_mode=bnnas``.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import typing
from pathlib import Path
from typing import Any, Sequence, get_type_hints

import yaml


class ConfigError(ValueError):
    """A config file or override that names a key that does not exist, or a bad value."""


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The network: which search space (``fbnas_jax.spaces``) and its two macro sizes.

    ``channels`` / ``cells_per_stage`` mean what the space's network says: NB201's C and N
    (cells per stage), NB101's stem width and modules per stack, DARTS's C and normal cells
    per stage (3N + 2 cells: N = 6 is the 20-cell CIFAR net, N = 4 the 14-cell ImageNet one);
    MobileNet takes its sizes from ``skeleton`` and ``width_mult`` instead.
    """

    space: str = "nb201"  # a registered search space (fbnas_jax.spaces.names())
    channels: int = 16
    cells_per_stage: int = 5
    bn_mode: str = "fair"  # "bnnas" (BN in convs only) | "fair" (BN after every non-zero op)
    bn_momentum: float = 0.9
    arch: str | None = None  # the space's architecture string: stand-alone network; None: the supernet
    # the macro skeleton where a space has several: MobileNet a built-in name
    # (proxylessnas-gpu, proxylessnas-mobile, ...-cifar) or a skeleton .yaml; DARTS the stem
    # (cifar | imagenet). None: the space's default.
    skeleton: str | None = None
    width_mult: float = 1.0  # MobileNet: every skeleton width times this (rounded to multiples of 8)


@dataclasses.dataclass(frozen=True)
class DataConfig:
    source: str = "synthetic"  # synthetic | synthetic-easy | cifar10 | cifar100 | imagenet16-120 | <dir or .tar.gz>
    data_dir: str | None = None  # TFDS data_dir
    cache_dir: str | None = None
    subset: int | None = None  # class-balanced subset of the training split
    augment: bool = True
    image_size: int = 224  # streamed sources (imagenet2012): the training / evaluation crop


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    params: str = "bn_only"  # bn_only | all
    sampler: str = "spos"  # spos | fairnas | fixed (stand-alone arch)
    epochs: int = 10
    max_steps: int | None = None  # stop early (tests, smoke runs)
    batch_size: int = 128
    learning_rate: float = 0.1  # peak rate (reached at the end of the warm-up)
    warmup_epochs: float = 0.0  # linear warm-up length; fractions of an epoch allowed
    warmup_start_factor: float = 0.25  # warm-up starts at this fraction of the peak (BN-NAS: 0.2/0.8)
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 0.0  # L2 on the trained leaves (BN gamma and beta in bn_only)
    schedule: str = "cosine"  # cosine (to 0 after the warm-up) | constant
    label_smoothing: float = 0.0
    seed: int = 0
    checkpoint_every: int = 200  # steps
    keep_checkpoints: int = 3
    log_every: int = 20
    # data parallelism: the batch is split over a mesh of this many local devices ("all" or
    # an integer); several hosts: see fbnas_jax.training.distributed
    devices: str = "1"


@dataclasses.dataclass(frozen=True)
class Config:
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


_SECTIONS = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}
_CHOICES = {
    ("model", "space"): lambda: tuple(_space_names()),
    ("model", "bn_mode"): ("bnnas", "fair"),
    ("train", "params"): ("bn_only", "all"),
    ("train", "sampler"): ("spos", "fairnas", "fixed"),
    ("train", "schedule"): ("cosine", "constant"),
}
# Ranges of numeric keys: (section, key) -> conditions, all of which must hold (None passes).
# Every int/float key is also type-checked (no silent 3.7 -> 3) and floats must be finite.
_BOUNDS = {
    ("model", "channels"): ((">=", 1),),
    ("model", "cells_per_stage"): ((">=", 1),),
    ("model", "bn_momentum"): ((">=", 0), ("<=", 1)),
    ("data", "subset"): ((">=", 1),),
    ("train", "epochs"): ((">=", 1),),
    ("train", "max_steps"): ((">=", 1),),
    ("train", "batch_size"): ((">=", 1),),
    ("train", "learning_rate"): ((">", 0),),
    ("train", "momentum"): ((">=", 0), ("<", 1)),
    ("train", "weight_decay"): ((">=", 0),),
    ("train", "label_smoothing"): ((">=", 0), ("<", 1)),
    ("train", "checkpoint_every"): ((">=", 1),),
    ("train", "keep_checkpoints"): ((">=", 1),),
    ("train", "log_every"): ((">=", 1),),
}
_OPS = {">=": lambda a, b: a >= b, ">": lambda a, b: a > b, "<=": lambda a, b: a <= b, "<": lambda a, b: a < b}


def _space_names() -> list[str]:
    from fbnas_jax.spaces import names

    return names()


def _unknown(kind: str, name: str, valid: Sequence[str]) -> ConfigError:
    close = difflib.get_close_matches(name, list(valid), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return ConfigError(f"unknown {kind} {name!r}{hint} (valid: {', '.join(sorted(valid))})")


def _base_type(annotation: Any) -> tuple[Any, bool]:
    """(the non-None type of an annotation such as ``int | None``, whether None is allowed)."""
    args = typing.get_args(annotation)
    if args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else str), len(rest) < len(args)
    return annotation, annotation is type(None)


def _as_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if value.is_integer():
            return int(value)
        raise ValueError(value)
    text = str(value).strip()
    try:
        return int(text)
    except ValueError:
        f = float(text)
        if f.is_integer():
            return int(f)
        raise


def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("true", "1", "yes"):
        return True
    if str(value).lower() in ("false", "0", "no"):
        return False
    raise ValueError(value)


def _coerce(section: str, key: str, value: Any, annotation: Any) -> Any:
    """``value`` read as the key's annotated type, or a :class:`ConfigError` saying why not.

    Generic: any key added to the dataclasses above is type-checked from its annotation;
    ranges come from ``_BOUNDS`` and choices from ``_CHOICES``.
    """
    name = f"{section}.{key}"
    if isinstance(value, str):
        value = os.path.expandvars(value)
        if "$" in value:
            raise ConfigError(f"{name}: environment variable in {value!r} is not set")
    kind, nullable = _base_type(annotation)
    if value is None:
        if not nullable:
            raise ConfigError(f"{name} may not be null")
        return None
    if isinstance(value, (dict, list)):
        raise ConfigError(f"{name}: expected a single {getattr(kind, '__name__', kind)}, got {value!r}")
    readers = {bool: _as_bool, int: _as_int, float: float, str: str}
    try:
        value = readers.get(kind, lambda v: v)(value)
    except (TypeError, ValueError):
        what = {bool: "true/false", int: "an integer", float: "a number", str: "a string"}.get(kind, kind)
        raise ConfigError(f"{name}: expected {what}, got {value!r}") from None
    if kind is float and not math.isfinite(value):
        raise ConfigError(f"{name} must be finite, got {value!r}")
    choices = _CHOICES.get((section, key))
    choices = choices() if callable(choices) else choices
    if choices and value not in choices:
        raise ConfigError(f"{name} must be one of {choices}, got {value!r}")
    for op, bound in _BOUNDS.get((section, key), ()):
        if not _OPS[op](value, bound):
            raise ConfigError(f"{name} must be {op} {bound}, got {value!r}")
    return value


def from_dict(raw: dict[str, Any] | None) -> Config:
    raw = raw or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"a config must be a mapping of sections, got {type(raw).__name__}")
    sections = {}
    for name, cls in _SECTIONS.items():
        values = raw.get(name) or {}
        if not isinstance(values, dict):
            raise ConfigError(f"config section {name!r} must be a mapping of keys (e.g. `{name}: {{key: value}}`), "
                              f"got {values!r}")
        hints = get_type_hints(cls)
        kwargs = {}
        for key, value in values.items():
            if key not in hints:
                raise _unknown(f"key in section {name!r}:", key, list(hints))
            kwargs[key] = _coerce(name, key, value, hints[key])
        sections[name] = cls(**kwargs)
    for name in raw:
        if name not in _SECTIONS:
            raise _unknown("config section", name, list(_SECTIONS))
    cfg = Config(**sections)
    _check_ranges(cfg)
    return cfg


def _check_ranges(cfg: Config) -> None:
    """Values that parse but make no sense (a negative rate, a warm-up longer than the run)."""
    t = cfg.train
    checks = [
        (t.learning_rate > 0, f"train.learning_rate must be > 0, got {t.learning_rate}"),
        (t.epochs >= 1, f"train.epochs must be >= 1, got {t.epochs}"),
        (t.batch_size >= 1, f"train.batch_size must be >= 1, got {t.batch_size}"),
        (0 <= t.warmup_epochs < t.epochs,
         f"train.warmup_epochs must be in [0, train.epochs={t.epochs}), got {t.warmup_epochs}"),
        (0 <= t.warmup_start_factor <= 1,
         f"train.warmup_start_factor must be in [0, 1], got {t.warmup_start_factor}"),
        (t.weight_decay >= 0, f"train.weight_decay must be >= 0, got {t.weight_decay}"),
        (0 <= t.label_smoothing < 1, f"train.label_smoothing must be in [0, 1), got {t.label_smoothing}"),
        (0 <= t.momentum < 1, f"train.momentum must be in [0, 1), got {t.momentum}"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)


def _parse_value(text: str) -> Any:
    """YAML scalar (numbers, booleans, null); anything YAML cannot read stays a string
    (cell strings such as ``|nor_conv_3x3~0|+...`` look like YAML block scalars)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """``["train.epochs=2", ...]`` applied onto a raw dict (YAML-parsed values)."""
    raw = {k: (dict(v) if isinstance(v, dict) else v if v else {}) for k, v in raw.items()}
    for item in overrides:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        dotted, value = item.split("=", 1)
        section, key = dotted.split(".", 1)
        if not isinstance(raw.setdefault(section, {}), dict):
            raise ConfigError(f"config section {section!r} must be a mapping of keys, got {raw[section]!r}")
        raw[section][key] = _parse_value(value)
    return raw


def read_config_file(path: str | os.PathLike | None) -> dict[str, Any]:
    """The raw mapping of sections in YAML file ``path`` (``{}`` for None), or a one-line
    :class:`ConfigError` naming the file and, for a syntax error, the line and column."""
    if path is None:
        return {}
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} does not exist")
    try:
        raw = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"config file {str(p)!r}: YAML syntax error{where}: {problem}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {str(p)!r} must hold a mapping of sections")
    return raw


def load_config(path: str | os.PathLike | None = None, overrides: Sequence[str] = ()) -> Config:
    raw = read_config_file(path)
    return from_dict(apply_overrides(raw, overrides))


def _flatten(cfg: Config | dict[str, Any]) -> dict[str, Any]:
    d = cfg.to_dict() if isinstance(cfg, Config) else cfg
    return {f"{section}.{key}": value for section, values in d.items() for key, value in values.items()}


def config_differences(old: Config, new: Config, ignore: Sequence[str] = ()) -> list[str]:
    """``["train.seed: 0 -> 1", ...]``: the dotted keys whose values differ, except ``ignore``."""
    a, b = _flatten(old), _flatten(new)
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b))
            if k not in ignore and a.get(k) != b.get(k)]
