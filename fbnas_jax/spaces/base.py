"""The search-space interface: a space is *data* (pure NumPy), its network lives elsewhere.

Everything above this layer -- training samplers, the scoring engine and every indicator,
search algorithms, ``fbnas`` commands, benchmarks -- talks to a search space only through a
:class:`SearchSpace` object obtained with :func:`get` (e.g. ``get(cfg.model.space)``), never
with ``if space == "nb201"``. In the spirit of NASLib (a space is an object with sample /
mutate / encode / cost) and NAS-Bench-201's own code (a cell string is data, apart from the
network that realises it).

A space is added by writing two files plus a config:

* ``fbnas_jax/spaces/<name>.py``: a :class:`SearchSpace` subclass and ``register(...)`` of
  one instance (pure NumPy: no JAX, no Flax);
* ``fbnas_jax/models/<name>.py``: the Flax network, named by :attr:`SearchSpace.network_module`
  and imported lazily by :meth:`SearchSpace.network` (see *The network contract* below);
* ``configs/<name>_*.yaml`` with ``model: {space: <name>, ...}``.

Encodings
---------
An architecture is an ``int32`` array of the fixed shape :attr:`SearchSpace.encoding_shape`
(NB201: ``(6,)``, one op index per edge). Fixed shapes let the supernet take the encoding as
an input, so one compiled forward is ``jax.vmap``-ed (or ``lax.map``-ped) over thousands of
architectures. Several encodings may denote the same network (isomorphic cells, unused
vertices): :meth:`SearchSpace.key` is the identity used for de-duplication and ground-truth
joins, :meth:`SearchSpace.canonical` a representative encoding.

Randomness
----------
Every random method takes a ``numpy.random.Generator``; nothing here holds global state.
Training draws step ``s``'s architectures from ``np.random.default_rng([seed, s, ...])``
(product spaces, see :attr:`SearchSpace.choices`: from ``fold_in(key(seed), s)``), so a
resumed run samples exactly what an uninterrupted one would.

The network contract (``fbnas_jax/models/<name>.py``)
-----------------------------------------------------
The Flax module class has a class variable ``space: ClassVar[str]`` naming its search space,
so any layer holding a network finds its space with :func:`of_network` (and the network
module with ``of_network(net).network()``). Module-level functions:

``build_network(model_config, num_classes) -> flax.linen.Module``
    ``model_config`` is :class:`fbnas_jax.config.ModelConfig` (``channels`` and
    ``cells_per_stage`` are the space's two macro sizes, e.g. NB201's C and N, NB101's stem
    width and modules per stack); ``model_config.arch`` None builds the weight-sharing
    supernet, a string / encoding builds the stand-alone network.
    The module is called as ``net.apply(variables, images, encoding, mode=ForwardMode(...))``
    (``encoding`` ignored by a stand-alone net) and has ``bn_mode`` ("bnnas" | "fair") and
    ``arch`` (None for the supernet). Further static fields (e.g. an execution ``strategy``)
    are the network's own business.
``init_variables(net, key, input_shape) -> {"params": ..., "batch_stats": ...}``
    ``key``: a PRNG key, or an int seed.
``bn_scores(params, batch_stats, encodings, *, net, kind) -> (n,) float32``
    jit-able; ``kind`` "gamma" (mean |scale| of each chosen op's last BN, summed) or
    "trainability" (mean |scale| / sqrt(var + eps)). The BN-NAS / FBN-NAS table indicators.
``cost_settings(net, input_size) -> dict``
    The keyword arguments of :meth:`SearchSpace.cost` that describe ``net`` (its widths,
    depths, classes) for images of ``input_size`` pixels: the cost indicators use them.

Ground-truth tables
-------------------
A benchmark table names architectures either by an ``arch`` column (the string form) or by
the columns :attr:`SearchSpace.table_columns` (NB101: ``adjacency`` and ``ops``), read by
:meth:`SearchSpace.from_table_row`; rows are joined by :meth:`SearchSpace.key`.
"""
from __future__ import annotations

import abc
import importlib
from typing import Any, Iterable, NamedTuple, Sequence

import numpy as np


class SearchSpaceError(ValueError):
    """An architecture, op name or string that is not part of the search space."""


class Cost(NamedTuple):
    """Cost of one architecture, in millions (the space's published counting convention)."""

    params_m: float
    flops_m: float


class SearchSpace(abc.ABC):
    """One search space as data. Subclasses set the class attributes and the abstract methods."""

    #: registry key, also ``model.space`` in configs and ``fbnas <name> ...`` on the command line
    name: str = ""
    #: shape of one encoding (int32)
    encoding_shape: tuple[int, ...] = ()
    #: dotted module of the Flax network (see the module docstring's contract)
    network_module: str = ""
    #: number of distinct architectures (after de-duplication) if known, else None
    size: int | None = None
    #: name of the string form, for messages ("cell string", "genotype", ...)
    string_name: str = "architecture string"
    #: a *product* space -- every position chooses independently and every combination is
    #: valid (NB201: six edges of five ops) -- gives the number of options per position, one
    #: per entry of an encoding; otherwise None. Training draws product spaces from JAX's keyed
    #: stream (the stream fbnas-jax has always used, so runs stay reproducible), other spaces
    #: from :meth:`sample` / :meth:`fair_group` (see :mod:`fbnas_jax.training.samplers`).
    choices: tuple[int, ...] | None = None
    #: columns of a benchmark table naming an architecture when it has no ``arch`` column
    table_columns: tuple[str, ...] = ("arch",)

    # ------------------------------------------------------------------ representation

    @abc.abstractmethod
    def validate(self, encoding: Any) -> np.ndarray:
        """One encoding as ``int32`` of :attr:`encoding_shape`, or :class:`SearchSpaceError`
        saying what is wrong (shape, range, an invalid cell)."""

    def validate_batch(self, encodings: Any) -> np.ndarray:
        """``(n, *encoding_shape)`` int32; every row validated."""
        arr = np.asarray(encodings)
        if arr.ndim != len(self.encoding_shape) + 1 or tuple(arr.shape[1:]) != tuple(self.encoding_shape):
            raise SearchSpaceError(
                f"expected {self.name} encodings of shape (n, {', '.join(map(str, self.encoding_shape))}); "
                f"got {arr.shape}")
        if arr.shape[0] == 0:
            return arr.astype(np.int32)
        return np.stack([self.validate(e) for e in arr])

    @abc.abstractmethod
    def to_string(self, encoding: Any) -> str:
        """The space's own string form of one architecture."""

    @abc.abstractmethod
    def from_string(self, text: str) -> np.ndarray:
        """Parse the string form; :class:`SearchSpaceError` on any malformation."""

    def parse(self, item: str | Sequence[int] | np.ndarray) -> np.ndarray:
        """What users type: the string form, or integers separated by commas, or a sequence."""
        if isinstance(item, str):
            text = item.strip()
            if text and all(p.strip().lstrip("-").isdigit() for p in text.split(",")):
                values = [int(p) for p in text.split(",")]
                size = int(np.prod(self.encoding_shape))
                if len(values) != size:
                    raise SearchSpaceError(f"{item!r} is neither a {self.name} {self.string_name} nor {size} "
                                           f"comma-separated integers (an encoding)")
                return self.validate(np.asarray(values).reshape(self.encoding_shape))
            if "," in text and all(p.strip().lstrip("-").isdigit() or not p.strip() for p in text.split(",")):
                raise SearchSpaceError(f"malformed {self.name} encoding {item!r}: empty entry between commas")
            return self.from_string(text)
        return self.validate(item)

    def parse_many(self, items: Iterable[str | Sequence[int]]) -> np.ndarray:
        out = [self.parse(x) for x in items]
        return np.stack(out) if out else np.zeros((0,) + tuple(self.encoding_shape), np.int32)

    def key(self, encoding: Any) -> str:
        """Identity of the network an encoding denotes (de-duplication, ground-truth joins).

        Default: the string form of the canonical encoding. Spaces with a published hash
        (NAS-Bench-101) return it instead.
        """
        return self.to_string(self.canonical(encoding))

    def canonical(self, encoding: Any) -> np.ndarray:
        """A representative encoding of the architecture (default: the encoding itself)."""
        return self.validate(encoding)

    def from_table_row(self, values: Sequence[str]) -> np.ndarray:
        """The encoding named by one row's :attr:`table_columns` values (in that order)."""
        return self.from_string(values[0])

    def describe(self, encoding: Any) -> dict[str, Any]:
        """JSON-ready facts printed by ``fbnas <space> arch --json`` (string, encoding, key, ...)."""
        enc = self.validate(encoding)
        return {"space": self.name, "arch": self.to_string(enc), "encoding": enc.tolist(), "key": self.key(enc)}

    # ------------------------------------------------------------------ enumeration

    @property
    def enumerable(self) -> bool:
        """Whether :meth:`all_encodings` and :meth:`index` are available."""
        return type(self).all_encodings is not SearchSpace.all_encodings

    def all_encodings(self) -> np.ndarray:
        """Every architecture once, ``(size, *encoding_shape)``; only for enumerable spaces."""
        raise NotImplementedError(f"the {self.name} space is not enumerated; sample it instead")

    def index(self, encodings: Any) -> np.ndarray:
        """Position of each encoding ``(n, *encoding_shape)`` in :meth:`all_encodings` (int64);
        only for enumerable spaces (a vectorised :meth:`key` for joins and search)."""
        raise NotImplementedError(f"the {self.name} space is not enumerated")

    # ------------------------------------------------------------------ sampling and EA moves

    @abc.abstractmethod
    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` valid encodings drawn uniformly from the space (with replacement)."""

    def fair_group(self, rng: np.random.Generator) -> np.ndarray:
        """A FairNAS strict-fairness group ``(G, *encoding_shape)``: every candidate op of every
        choice position appears exactly once across the group. Spaces without one raise."""
        raise NotImplementedError(f"the {self.name} space has no FairNAS group sampler")

    @abc.abstractmethod
    def mutate(self, rng: np.random.Generator, encoding: Any, prob: float) -> np.ndarray:
        """A valid child: each choice re-drawn with probability ``prob`` (may equal the parent)."""

    @abc.abstractmethod
    def crossover(self, rng: np.random.Generator, a: Any, b: Any) -> np.ndarray:
        """A valid child mixing parents ``a`` and ``b`` (uniform crossover where the space allows)."""

    # ------------------------------------------------------------------ cost

    @abc.abstractmethod
    def cost(self, encoding: Any, **network: Any) -> Cost:
        """Exact params / FLOPs (millions) of the stand-alone network; ``network`` holds the
        macro settings (channels, cells, input size, classes, skeleton ...) with the benchmark's
        published values as defaults. The docstring states the counting convention."""

    def costs(self, encodings: Any, **network: Any) -> tuple[np.ndarray, np.ndarray]:
        """``(params_m, flops_m)`` arrays for many encodings (override when vectorisable)."""
        enc = self.validate_batch(encodings)
        out = np.asarray([tuple(self.cost(e, **network)) for e in enc], np.float64).reshape(-1, 2)
        return out[:, 0], out[:, 1]

    # ------------------------------------------------------------------ network

    def network(self):
        """The Flax module of :attr:`network_module` (imported on first use)."""
        if not self.network_module:
            raise NotImplementedError(f"the {self.name} space has no network")
        return importlib.import_module(self.network_module)

    def __repr__(self) -> str:
        return f"<search space {self.name}: encodings {self.encoding_shape}, size {self.size}>"


# ---------------------------------------------------------------------- registry

#: name -> module that registers it (imported lazily, so ``import fbnas_jax.spaces`` stays light)
KNOWN: dict[str, str] = {}
REGISTRY: dict[str, SearchSpace] = {}


def register(space: SearchSpace) -> SearchSpace:
    if not space.name:
        raise ValueError("a search space needs a name")
    if space.name in REGISTRY and REGISTRY[space.name] is not space:
        raise ValueError(f"search space {space.name!r} registered twice")
    REGISTRY[space.name] = space
    return space


def get(name: str | SearchSpace) -> SearchSpace:
    """The registered space called ``name`` (a :class:`SearchSpace` is returned as is)."""
    if isinstance(name, SearchSpace):
        return name
    if name not in REGISTRY and name in KNOWN:
        importlib.import_module(KNOWN[name])
    try:
        return REGISTRY[name]
    except KeyError:
        names = sorted(set(KNOWN) | set(REGISTRY))
        raise SearchSpaceError(f"unknown search space {name!r}; available: {', '.join(names)}") from None


def names() -> list[str]:
    return sorted(set(KNOWN) | set(REGISTRY))


def of_network(net: Any) -> SearchSpace:
    """The search space of a Flax network (its class variable ``space``)."""
    name = getattr(net, "space", None)
    if not isinstance(name, str):
        raise TypeError(f"{type(net).__name__} does not name its search space (class variable `space`)")
    return get(name)
