"""Indicators: importing this package registers every indicator module."""
from __future__ import annotations

from fbnas_jax.indicators.base import (  # noqa: F401
    REGISTRY, Indicator, ScoringContext, UnknownIndicatorError, get, register,
)
from fbnas_jax.ranking import rank_average  # noqa: F401  (re-exported)
from fbnas_jax.indicators import supernet  # noqa: F401  (registers gamma, trainability, ...)
from fbnas_jax.indicators import training_free  # noqa: F401  (registers naswot, synflow, ...)
from fbnas_jax.indicators import teg  # noqa: F401  (registers teg_generalization, linear_regions_tenas, teg)

__all__ = ["REGISTRY", "Indicator", "ScoringContext", "UnknownIndicatorError", "get", "register", "rank_average",
           "supernet", "teg", "training_free"]
