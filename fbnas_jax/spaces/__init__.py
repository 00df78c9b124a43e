"""Search spaces as data: encodings, cell strings, cost models (pure NumPy)."""
from fbnas_jax.spaces import nb201
from fbnas_jax.spaces.nb201 import SearchSpaceError

__all__ = ["nb201", "SearchSpaceError"]
