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
import os
from pathlib import Path
from typing import Any, Sequence, get_type_hints

import yaml


class ConfigError(ValueError):
    """A config file or override that names a key that does not exist, or a bad value."""


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The network: which search space (``fbnas_jax.spaces``) and its two macro sizes.

    ``channels`` / ``cells_per_stage`` mean what the space's network says: NB201's C and N
    (cells per stage), NB101's stem width and modules per stack.
    """

    space: str = "nb201"  # a registered search space (fbnas_jax.spaces.names())
    channels: int = 16
    cells_per_stage: int = 5
    bn_mode: str = "fair"  # "bnnas" (BN in convs only) | "fair" (BN after every non-zero op)
    bn_momentum: float = 0.9
    arch: str | None = None  # the space's architecture string: stand-alone network; None: the supernet


@dataclasses.dataclass(frozen=True)
class DataConfig:
    source: str = "synthetic"  # synthetic | cifar10 | cifar100 | imagenet16-120 | <dir or .tar.gz>
    data_dir: str | None = None  # TFDS data_dir
    cache_dir: str | None = None
    subset: int | None = None  # class-balanced subset of the training split
    augment: bool = True


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    params: str = "bn_only"  # bn_only | all
    sampler: str = "spos"  # spos | fairnas | fixed (stand-alone arch)
    epochs: int = 10
    max_steps: int | None = None  # stop early (tests, smoke runs)
    batch_size: int = 128
    learning_rate: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 0.0
    schedule: str = "cosine"  # cosine | constant
    label_smoothing: float = 0.0
    seed: int = 0
    checkpoint_every: int = 200  # steps
    keep_checkpoints: int = 3
    log_every: int = 20


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


def _space_names() -> list[str]:
    from fbnas_jax.spaces import names

    return names()


def _unknown(kind: str, name: str, valid: Sequence[str]) -> ConfigError:
    close = difflib.get_close_matches(name, list(valid), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return ConfigError(f"unknown {kind} {name!r}{hint} (valid: {', '.join(sorted(valid))})")


def _coerce(section: str, key: str, value: Any, annotation: Any) -> Any:
    if isinstance(value, str):
        value = os.path.expandvars(value)
        if "$" in value:
            raise ConfigError(f"{section}.{key}: environment variable in {value!r} is not set")
    text = str(annotation)
    if value is None:
        if "None" not in text:
            raise ConfigError(f"{section}.{key} may not be null")
        return None
    try:
        if "bool" in text and not isinstance(value, bool):
            if str(value).lower() in ("true", "1", "yes"):
                value = True
            elif str(value).lower() in ("false", "0", "no"):
                value = False
            else:
                raise ValueError(value)
        elif text.startswith("int") or text == "<class 'int'>":
            value = int(value)
        elif "float" in text:
            value = float(value)
        elif "str" in text:
            value = str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{section}.{key}: cannot read {value!r} as {annotation}") from None
    choices = _CHOICES.get((section, key))
    choices = choices() if callable(choices) else choices
    if choices and value not in choices:
        raise ConfigError(f"{section}.{key} must be one of {choices}, got {value!r}")
    return value


def from_dict(raw: dict[str, Any] | None) -> Config:
    raw = raw or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"a config must be a mapping of sections, got {type(raw).__name__}")
    sections = {}
    for name, cls in _SECTIONS.items():
        values = raw.get(name) or {}
        if not isinstance(values, dict):
            raise ConfigError(f"config section {name!r} must be a mapping")
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
    return Config(**sections)


def _parse_value(text: str) -> Any:
    """YAML scalar (numbers, booleans, null); anything YAML cannot read stays a string
    (cell strings such as ``|nor_conv_3x3~0|+...`` look like YAML block scalars)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """``["train.epochs=2", ...]`` applied onto a raw dict (YAML-parsed values)."""
    raw = {k: dict(v or {}) for k, v in raw.items()}
    for item in overrides:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        dotted, value = item.split("=", 1)
        section, key = dotted.split(".", 1)
        raw.setdefault(section, {})[key] = _parse_value(value)
    return raw


def load_config(path: str | os.PathLike | None = None, overrides: Sequence[str] = ()) -> Config:
    raw: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {str(p)!r} does not exist")
        raw = yaml.safe_load(p.read_text()) or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"config file {str(p)!r} must hold a mapping of sections")
    return from_dict(apply_overrides(raw, overrides))
