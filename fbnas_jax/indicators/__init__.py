"""Indicators: importing this package registers every indicator module."""
from __future__ import annotations

from fbnas_jax.indicators.base import (  # noqa: F401
    REGISTRY, Indicator, ScoringContext, UnknownIndicatorError, get, rank_average, register,
)
from fbnas_jax.indicators import supernet  # noqa: F401  (registers gamma, trainability, ...)
from fbnas_jax.indicators import training_free  # noqa: F401  (registers naswot, synflow, ...)
