"""Indicators: importing this package registers every indicator module.

``training_free`` is written separately; it is imported when present.
"""
from __future__ import annotations

import importlib.util

from fbnas_jax.indicators.base import (  # noqa: F401
    REGISTRY, Indicator, ScoringContext, UnknownIndicatorError, get, rank_average, register,
)
from fbnas_jax.indicators import supernet  # noqa: F401  (registers gamma, trainability, ...)

if importlib.util.find_spec("fbnas_jax.indicators.training_free") is not None:
    from fbnas_jax.indicators import training_free  # noqa: F401
