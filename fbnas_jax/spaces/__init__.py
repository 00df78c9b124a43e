"""Search spaces as data: encodings, strings, sampling, EA moves, cost models (pure NumPy).

``get(name)`` returns a registered :class:`SearchSpace`; modules named in ``base.KNOWN`` are
imported on first use, so importing this package stays light. See :mod:`.base` for the
interface and for how to add a space.
"""
from fbnas_jax.spaces import base
from fbnas_jax.spaces.base import Cost, SearchSpace, SearchSpaceError, get, names, of_network, register

base.KNOWN.update({
    "nb201": "fbnas_jax.spaces.nb201",
})

from fbnas_jax.spaces import nb201  # noqa: E402  (always loaded: cheap, and the default space)

__all__ = ["Cost", "SearchSpace", "SearchSpaceError", "base", "get", "names", "nb201", "of_network", "register"]
