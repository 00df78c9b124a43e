"""fbnas-jax: BatchNorm-only supernet training (BN-NAS, FBN-NAS) in JAX/Flax.

Importing this package is cheap: it pulls in NumPy and the search-space modules only.
JAX/Flax modules are imported by the submodules that need them, and neither
TensorFlow nor neural-tangents is ever imported from here (theory code lives in the
separate top-level package ``theory``).
"""
from fbnas_jax.spaces import nb201

__version__ = "0.1.0"
__all__ = ["nb201", "__version__"]
