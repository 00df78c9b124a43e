"""The MobileNet-like (ProxylessNAS / FairNAS / BN-NAS) search space as data (pure NumPy).

The network is a fixed macro *skeleton* (:class:`Skeleton`) with ``sum(depths)`` searchable
layers (21 in the published skeletons). Each searchable layer is a MobileNetV2 inverted
bottleneck (MBConv: 1x1 expansion, k x k depthwise, 1x1 linear projection, each followed by
BN) with kernel ``k`` in {3, 5, 7} and expansion ``e`` in {3, 6}, or ``skip`` (identity),
which is legal only where the layer has stride 1 and equal input/output widths (the first
layer of every stage changes width or stride, so it never is). BN-NAS's space has no
``skip`` (``allow_skip: false``); FBN-NAS adds it. A squeeze-and-excitation module after the
depthwise conv (the "+SE" results) is a skeleton setting: ``se: none`` (no SE), ``all``
(every searchable MBConv has one) or ``search`` (each layer chooses, ops ``k3e3_se`` ...).

Encoding: ``int32`` of shape ``(layers,)``, one index into :data:`OPS` per layer:
``0..5 = k3e3, k3e6, k5e3, k5e6, k7e3, k7e6`` (BN-NAS's integers), ``6 = skip`` and
``7..12`` the SE variants. BN-NAS writes skip as ``-1`` (its score table's last column);
``-1`` is accepted everywhere and stored as 6. The string form is the comma-separated op
names, e.g. ``k5e3,k3e3,skip,skip,k7e3,...``; parsing also accepts integers and ``/`` or
spaces between stages.

Cost model (ProxylessNAS convention, :func:`cost_table`): at the skeleton's input size,

* **FLOPs** = multiply-adds of every convolution, ``C_in/groups * C_out * k * k * H_out *
  W_out`` (depthwise: ``C * k * k * H_out * W_out``), plus the classifier's weights
  ``features * classes`` (its bias, BN, activations, pooling, residual additions and the SE
  gating multiply are free; the SE 1x1 convs count ``2 * mid * reduced``);
* **params** = every trainable parameter: conv kernels (no conv bias, except SE's two 1x1
  convs), 2 per BN channel, the classifier's weight and bias;
* an MBConv's hidden width is ``round(C_in * e)`` (no expansion conv when ``e == 1``), the SE
  width ``make_divisible(mid * se_ratio, 8)``; ``skip`` costs nothing.

This reproduces the published nets exactly (tests): ProxylessNAS-mobile 320,427,584
multiply-adds / 4,080,512 params and ProxylessNAS-GPU 465,260,160 / 7,119,848 at 224x224
with 1,000 classes. Note the published ProxylessNAS-mobile's first stage is 32 wide (the
``proxylessnas-mobile`` skeleton); with 24 it would be 304.2 M / 4.07 M.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import os
import re
from typing import Any, Iterable, NamedTuple

import numpy as np

from fbnas_jax.spaces.base import Cost, SearchSpace, SearchSpaceError, SpaceOption, register

MB_OPS: tuple[str, ...] = ("k3e3", "k3e6", "k5e3", "k5e6", "k7e3", "k7e6")
SKIP = len(MB_OPS)  # 6
OPS: tuple[str, ...] = MB_OPS + ("skip",) + tuple(f"{o}_se" for o in MB_OPS)
NUM_OPS = len(OPS)  # 13
OP_INDEX = {name: i for i, name in enumerate(OPS)}
_ALIASES = {"identity": SKIP, "id": SKIP, "skip_connect": SKIP}
SE_MODES = ("none", "all", "search")


def op_kernel_expansion(index: int) -> tuple[int, int, bool]:
    """``(kernel, expansion, has_se_choice)`` of MBConv op ``index`` (not ``skip``)."""
    if index == SKIP:
        raise ValueError("skip has no kernel")
    name = OPS[index]
    return int(name[1]), int(name[3]), name.endswith("_se")


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """MobileNetV2/TF rounding of a width to a multiple of ``divisor`` (never below 90 %)."""
    min_value = divisor if min_value is None else min_value
    new = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return int(new)


def conv_out(size: int, kernel: int, stride: int) -> int:
    """Output size of a 'same'-padded (``k // 2``) convolution."""
    pad = kernel // 2
    return (size + 2 * pad - kernel) // stride + 1


class LayerSpec(NamedTuple):
    """One searchable layer of a skeleton."""

    index: int
    stage: int
    c_in: int
    c_out: int
    stride: int
    size_in: int  # input height = width
    skip_ok: bool  # skip legal and the MBConv has an identity shortcut (stride 1, c_in == c_out)


@dataclasses.dataclass(frozen=True)
class Skeleton:
    """The fixed part of a MobileNet-like network (widths in channels, sizes in pixels).

    stem: ``Conv kxk(stem_stride) 3 -> stem_channels`` + BN + ReLU6; a fixed MBConv k3 e1
    (stride 1) ``stem_channels -> first_channels`` (skipped when ``first_channels`` is 0);
    stages ``i`` of ``depths[i]`` searchable layers of width ``widths[i]``, the first with
    ``strides[i]``; ``Conv1x1 -> mix_channels`` + BN + ReLU6; global average pool; linear
    classifier (with bias).
    """

    name: str
    stem_channels: int
    first_channels: int
    widths: tuple[int, ...]
    depths: tuple[int, ...]
    strides: tuple[int, ...]
    mix_channels: int
    stem_stride: int = 2
    stem_kernel: int = 3
    input_size: int = 224
    num_classes: int = 1000
    se: str = "none"
    se_ratio: float = 0.25
    allow_skip: bool = True
    #: per searchable layer, whether ``skip`` (and the MBConv's identity shortcut) exists there;
    #: None derives it (stride 1 and equal widths). :meth:`scaled` freezes it from the full-width
    #: skeleton, since rounding can make two different widths equal.
    skip_layers: tuple[bool, ...] | None = None

    def __post_init__(self):
        for field in ("widths", "depths", "strides"):
            object.__setattr__(self, field, tuple(int(v) for v in getattr(self, field)))
        if self.skip_layers is not None:
            object.__setattr__(self, "skip_layers", tuple(bool(v) for v in self.skip_layers))
        n = len(self.widths)
        if n == 0 or len(self.depths) != n or len(self.strides) != n:
            raise SearchSpaceError(
                f"skeleton {self.name!r}: widths, depths and strides must be non-empty lists of one length; "
                f"got {len(self.widths)}, {len(self.depths)}, {len(self.strides)}")
        ints = {"stem_channels": 1, "mix_channels": 1, "stem_stride": 1, "stem_kernel": 1, "input_size": 1,
                "num_classes": 1, "first_channels": 0}
        for key, low in ints.items():
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise SearchSpaceError(f"skeleton {self.name!r}: {key} must be an integer >= {low}, got {value!r}")
        if any(w < 1 for w in self.widths) or any(d < 1 for d in self.depths) or any(s not in (1, 2) for s in self.strides):
            raise SearchSpaceError(f"skeleton {self.name!r}: widths and depths must be >= 1 and strides 1 or 2")
        if self.se not in SE_MODES:
            raise SearchSpaceError(f"skeleton {self.name!r}: se must be one of {SE_MODES}, got {self.se!r}")
        if not 0 < float(self.se_ratio) <= 1:
            raise SearchSpaceError(f"skeleton {self.name!r}: se_ratio must lie in (0, 1], got {self.se_ratio!r}")
        if self.stem_kernel % 2 == 0:
            raise SearchSpaceError(f"skeleton {self.name!r}: stem_kernel must be odd")
        if self.skip_layers is not None:
            if len(self.skip_layers) != self.num_layers:
                raise SearchSpaceError(f"skeleton {self.name!r}: skip_layers needs {self.num_layers} entries, "
                                       f"got {len(self.skip_layers)}")
            bad = [s.index for s, ok in zip(self._layers(None), self.skip_layers) if ok and not s.skip_ok]
            if bad:
                raise SearchSpaceError(f"skeleton {self.name!r}: skip_layers allows skip at layer(s) {bad}, which "
                                       f"change width or stride")

    # -------------------------------------------------------------- geometry
    @property
    def num_layers(self) -> int:
        return int(sum(self.depths))

    @property
    def stem_size(self) -> int:
        return conv_out(self.input_size, self.stem_kernel, self.stem_stride)

    @property
    def first_out(self) -> int:
        """Width entering the first searchable layer."""
        return self.first_channels or self.stem_channels

    def layers(self) -> list[LayerSpec]:
        return self._layers(self.skip_layers)

    def _layers(self, skip_layers) -> list[LayerSpec]:
        out, c_in, size = [], self.first_out, self.stem_size
        for stage, (width, depth, stride) in enumerate(zip(self.widths, self.depths, self.strides)):
            for j in range(depth):
                s = stride if j == 0 else 1
                ok = s == 1 and c_in == width if skip_layers is None else skip_layers[len(out)]
                out.append(LayerSpec(len(out), stage, c_in, width, s, size, ok))
                size, c_in = conv_out(size, 3, s), width
        return out

    def final_size(self) -> int:
        size = self.stem_size
        for spec in self.layers():
            size = conv_out(size, 3, spec.stride)
        return size

    # -------------------------------------------------------------- variants
    def replace(self, **changes: Any) -> "Skeleton":
        return dataclasses.replace(self, **changes)

    def for_small_images(self, input_size: int = 32, num_classes: int = 10) -> "Skeleton":
        """The usual CIFAR adaptation (as MobileNetV2 on CIFAR): stem and first stage stride 1,
        so a 32x32 image ends at 4x4 instead of 1x1."""
        strides = (1,) + self.strides[1:]
        return self.replace(name=f"{self.name}-small", stem_stride=1, strides=strides,
                            input_size=input_size, num_classes=num_classes)

    def scaled(self, width_mult: float, divisor: int = 8) -> "Skeleton":
        """All widths times ``width_mult``, rounded with :func:`make_divisible` (small CPU nets)."""
        if width_mult <= 0:
            raise SearchSpaceError(f"width_mult must be > 0, got {width_mult}")

        def w(c: int) -> int:
            return make_divisible(c * width_mult, divisor) if c else 0

        return self.replace(name=f"{self.name}-x{width_mult:g}", stem_channels=w(self.stem_channels),
                            first_channels=w(self.first_channels), widths=tuple(w(c) for c in self.widths),
                            mix_channels=w(self.mix_channels),
                            skip_layers=tuple(spec.skip_ok for spec in self.layers()))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for key in ("widths", "depths", "strides", "skip_layers"):
            d[key] = None if d[key] is None else list(d[key])
        return d

    @classmethod
    def from_dict(cls, raw: dict[str, Any], name: str = "custom") -> "Skeleton":
        if not isinstance(raw, dict):
            raise SearchSpaceError(f"a skeleton must be a mapping, got {type(raw).__name__}")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - fields)
        if unknown:
            raise SearchSpaceError(f"unknown skeleton key(s) {unknown}; valid: {sorted(fields)}")
        missing = sorted(k for k in ("stem_channels", "first_channels", "widths", "depths", "strides", "mix_channels")
                         if k not in raw)
        if missing:
            raise SearchSpaceError(f"skeleton {raw.get('name', name)!r} misses key(s) {missing}")
        raw = dict(raw)
        raw.setdefault("name", name)
        for key in ("widths", "depths", "strides", "skip_layers"):
            if key in raw and raw[key] is not None and not isinstance(raw[key], (list, tuple)):
                raise SearchSpaceError(f"skeleton key {key!r} must be a list, got {raw[key]!r}")
        return cls(**raw)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> "Skeleton":
        import yaml

        if not os.path.isfile(path):
            raise SearchSpaceError(f"skeleton file {str(path)!r} does not exist")
        with open(path) as f:
            raw = yaml.safe_load(f)
        if isinstance(raw, dict) and "skeleton" in raw and len(raw) == 1:
            raw = raw["skeleton"]
        return cls.from_dict(raw, name=os.path.splitext(os.path.basename(str(path)))[0])


_STAGES = dict(depths=(4, 4, 4, 4, 4, 1), strides=(2, 2, 2, 1, 2, 1))
#: Published skeletons (224x224, 1,000 classes).
SKELETONS: dict[str, Skeleton] = {
    # ProxylessNAS-mobile as released (first stage 32 wide, as its published net).
    "proxylessnas-mobile": Skeleton("proxylessnas-mobile", 32, 16, (32, 40, 80, 96, 192, 320), mix_channels=1280,
                                    **_STAGES),
    # ProxylessNAS-GPU: the wider skeleton BN-NAS searches.
    "proxylessnas-gpu": Skeleton("proxylessnas-gpu", 40, 24, (32, 56, 112, 128, 256, 432), mix_channels=1728,
                                 **_STAGES),
}
for _name in list(SKELETONS):  # the usual CIFAR adaptation of each (32x32, 10 classes)
    SKELETONS[f"{_name}-cifar"] = SKELETONS[_name].for_small_images(32, 10).replace(name=f"{_name}-cifar")
DEFAULT_SKELETON = "proxylessnas-gpu"

#: Published architectures in this space (layer choices), for tests and examples.
PROXYLESSNAS_MOBILE = ("k5e3,k3e3,skip,skip,k7e3,k3e3,k5e3,k5e3,k7e6,k5e3,k5e3,k5e3,"
                       "k5e6,k5e3,k5e3,k5e3,k7e6,k7e6,k7e3,k7e3,k7e6")
PROXYLESSNAS_GPU = ("k5e3,skip,skip,skip,k7e3,skip,skip,k3e3,k7e6,skip,skip,k5e3,"
                    "k5e6,skip,k3e3,k5e3,k7e6,k7e6,k7e6,k5e6,k7e6")


def get_skeleton(spec: str | Skeleton | dict) -> Skeleton:
    """A built-in name, a YAML path, a mapping or a :class:`Skeleton`."""
    if isinstance(spec, Skeleton):
        return spec
    if isinstance(spec, dict):
        return Skeleton.from_dict(spec)
    if isinstance(spec, str):
        if spec in SKELETONS:
            return SKELETONS[spec]
        if spec.endswith((".yaml", ".yml")) or os.path.sep in spec:
            return Skeleton.from_yaml(spec)
        raise SearchSpaceError(f"unknown skeleton {spec!r}; built-in: {', '.join(SKELETONS)} (or a .yaml file)")
    raise SearchSpaceError(f"a skeleton is a name, a YAML path or a mapping, got {type(spec).__name__}")


# ---------------------------------------------------------------------- cost model

def _conv(c_in: int, c_out: int, k: int, size_out: int, groups: int = 1) -> tuple[int, int]:
    """(params, multiply-adds) of a bias-free convolution followed by BN."""
    weights = c_in // groups * c_out * k * k
    return weights + 2 * c_out, weights * size_out * size_out


def mbconv_cost(c_in: int, c_out: int, kernel: int, expansion: int, stride: int, size_in: int,
                se_ratio: float | None = None) -> tuple[int, int]:
    """(params, multiply-adds) of one MBConv (ProxylessNAS counting; see the module docstring)."""
    mid = int(round(c_in * expansion))
    size_out = conv_out(size_in, kernel, stride)
    params = flops = 0
    if expansion != 1:
        p, f = _conv(c_in, mid, 1, size_in)
        params, flops = params + p, flops + f
    p, f = _conv(mid, mid, kernel, size_out, groups=mid)
    params, flops = params + p, flops + f
    if se_ratio:
        r = make_divisible(mid * se_ratio, 8)
        params += mid * r + r + r * mid + mid
        flops += 2 * mid * r
    p, f = _conv(mid, c_out, 1, size_out)
    return params + p, flops + f


class CostTable(NamedTuple):
    """Additive cost: ``base + sum_l layer[l, encoding[l]]`` (integers; illegal entries 0)."""

    base_params: int
    base_flops: int
    layer_params: np.ndarray  # (layers, NUM_OPS) int64
    layer_flops: np.ndarray


@functools.lru_cache(maxsize=64)
def cost_table(skeleton: Skeleton) -> CostTable:
    sk = skeleton
    params, flops = _conv(3, sk.stem_channels, sk.stem_kernel, sk.stem_size)
    if sk.first_channels:
        p, f = mbconv_cost(sk.stem_channels, sk.first_channels, 3, 1, 1, sk.stem_size)
        params, flops = params + p, flops + f
    layers = sk.layers()
    lp = np.zeros((len(layers), NUM_OPS), np.int64)
    lf = np.zeros((len(layers), NUM_OPS), np.int64)
    for spec in layers:
        for op in range(NUM_OPS):
            if op == SKIP:
                continue
            k, e, se = op_kernel_expansion(op)
            with_se = sk.se == "all" or se
            lp[spec.index, op], lf[spec.index, op] = mbconv_cost(
                spec.c_in, spec.c_out, k, e, spec.stride, spec.size_in, sk.se_ratio if with_se else None)
    size = sk.final_size()
    p, f = _conv(sk.widths[-1], sk.mix_channels, 1, size)
    params, flops = params + p, flops + f
    params += sk.mix_channels * sk.num_classes + sk.num_classes
    flops += sk.mix_channels * sk.num_classes
    return CostTable(int(params), int(flops), lp, lf)


# ---------------------------------------------------------------------- the space

_SEP = re.compile(r"[,\s/]+")
_OP_RE = re.compile(r"^k([357])e([36])(_se)?$")


def op_from_token(token: str) -> int:
    """``'k5e3'``, ``'k7e6_se'``, ``'skip'`` or an integer (``-1`` = skip) -> op index."""
    t = token.strip().lower()
    if re.fullmatch(r"-?\d+", t):
        value = int(t)
        return SKIP if value == -1 else value
    if t in OP_INDEX:
        return OP_INDEX[t]
    if t in _ALIASES:
        return _ALIASES[t]
    raise SearchSpaceError(f"unknown MobileNet op {token!r}; ops are {', '.join(OPS)} (or -1..5 as in BN-NAS)")


class MobileNetSpace(SearchSpace):
    """21 (``skeleton.num_layers``) searchable MBConv layers on a fixed skeleton."""

    name = "mobilenet"
    title = "MobileNet (ProxylessNAS / BN-NAS)"
    network_module = "fbnas_jax.models.mobilenet"
    string_name = "layer choices"
    #: the skeleton fixes input size and classes (``--skeleton``; a .yaml for other values)
    cost_defaults: dict = {}
    options = (
        SpaceOption("skeleton", f"macro skeleton: {' | '.join(SKELETONS)} | a skeleton .yaml file",
                    DEFAULT_SKELETON),
    )

    def __init__(self, skeleton: str | Skeleton | dict = DEFAULT_SKELETON):
        self.skeleton = get_skeleton(skeleton)
        self.layers = self.skeleton.layers()
        self.encoding_shape = (len(self.layers),)
        legal = np.zeros((len(self.layers), NUM_OPS), bool)
        legal[:, :SKIP] = True
        if self.skeleton.se == "search":
            legal[:, SKIP + 1:] = True
        if self.skeleton.allow_skip:
            legal[:, SKIP] = [spec.skip_ok for spec in self.layers]
        self.legal = legal
        #: legal op indices of each layer (not contiguous: skip is 6, SE variants 7..12)
        self.layer_choices = [np.flatnonzero(row).astype(np.int32) for row in legal]
        self.size = int(math.prod(len(c) for c in self.layer_choices))
        self.ops = tuple(OPS[i] for i in range(NUM_OPS) if legal[:, i].any())

    def configure(self, skeleton: str | Skeleton | dict | None = None, **rest: Any) -> "MobileNetSpace":
        given = {k: v for k, v in rest.items() if v is not None}
        if given:
            raise SearchSpaceError(f"unknown mobilenet option(s) {sorted(given)}; options: skeleton")
        if skeleton is None:
            return self
        return MobileNetSpace(skeleton)

    def for_model(self, model_config: Any) -> "MobileNetSpace":
        """The space on ``model.skeleton`` (default :data:`DEFAULT_SKELETON`), at full width:
        costs (and FLOPs limits) refer to the reference network whatever ``width_mult`` trains."""
        return self.configure(getattr(model_config, "skeleton", None) or DEFAULT_SKELETON)

    # ---------------------------------------------------------- representation
    def validate(self, encoding: Any) -> np.ndarray:
        arr = np.asarray(encoding)
        if arr.dtype.kind not in "biuf":
            raise SearchSpaceError(f"a MobileNet encoding must be numeric, got dtype {arr.dtype}")
        if arr.shape != self.encoding_shape:
            raise SearchSpaceError(
                f"a MobileNet encoding on skeleton {self.skeleton.name!r} has {self.encoding_shape[0]} layer "
                f"choices; got shape {arr.shape}")
        if arr.dtype.kind == "f" and not np.all(np.mod(arr, 1) == 0):
            raise SearchSpaceError(f"encoding entries must be integers, got {arr.tolist()}")
        enc = np.where(arr == -1, SKIP, arr).astype(np.int32)
        out_of_range = (enc < 0) | (enc >= NUM_OPS)
        if out_of_range.any():
            i = int(np.flatnonzero(out_of_range)[0])
            raise SearchSpaceError(f"layer {i}: op index {int(arr[i])} is not one of -1..{NUM_OPS - 1} ({', '.join(OPS)})")
        bad = ~self.legal[np.arange(len(enc)), enc]
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise SearchSpaceError(self._illegal_message(i, int(enc[i])))
        return enc

    def _illegal_message(self, i: int, op: int) -> str:
        spec = self.layers[i]
        if op == SKIP and not self.skeleton.allow_skip:
            why = "this skeleton has no skip op (allow_skip: false)"
        elif op == SKIP:
            why = f"skip needs stride 1 and equal widths, layer {i} has stride {spec.stride}, {spec.c_in} -> {spec.c_out}"
        else:
            why = "SE variants need a skeleton with se: search"
        return f"layer {i}: {OPS[op]} is not allowed ({why})"

    def to_string(self, encoding: Any) -> str:
        return ",".join(OPS[i] for i in self.validate(encoding))

    def from_string(self, text: str) -> np.ndarray:
        if not isinstance(text, str):
            raise SearchSpaceError(f"{self.string_name} must be a string, got {type(text).__name__}")
        tokens = [t for t in _SEP.split(text.strip()) if t]
        if len(tokens) != self.encoding_shape[0]:
            raise SearchSpaceError(
                f"expected {self.encoding_shape[0]} layer choices (comma-separated) for skeleton "
                f"{self.skeleton.name!r}, got {len(tokens)} in {text!r}")
        return self.validate(np.asarray([op_from_token(t) for t in tokens]))

    def parse(self, item):
        if isinstance(item, str):
            return self.from_string(item)
        return self.validate(item)

    def describe(self, encoding: Any) -> dict[str, Any]:
        out = super().describe(encoding)
        out["skeleton"] = self.skeleton.name
        out["bnnas_integers"] = [(-1 if i == SKIP else int(i)) for i in out["encoding"]]
        return out

    # ---------------------------------------------------------- sampling and EA moves
    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        out = np.empty((int(n), len(self.layers)), np.int32)
        for i, choices in enumerate(self.layer_choices):
            out[:, i] = rng.choice(choices, size=int(n))
        return out

    def fair_group(self, rng: np.random.Generator) -> np.ndarray:
        """FairNAS strict fairness: ``G`` = the largest number of choices of any layer
        (6 MBConv ops, 7 with skip, 13 with searched SE); every layer offering ``G`` choices
        runs each exactly once across the group. Layers with fewer (no skip at a stage's first
        layer) run each of theirs once and fill the remaining slots uniformly -- as fair as
        the space allows."""
        g = max(len(c) for c in self.layer_choices)
        out = np.empty((g, len(self.layers)), np.int32)
        for i, choices in enumerate(self.layer_choices):
            column = np.concatenate([choices, rng.choice(choices, size=g - len(choices))])
            out[:, i] = rng.permutation(column)
        return out

    def mutate(self, rng: np.random.Generator, encoding: Any, prob: float) -> np.ndarray:
        child = self.validate(encoding).copy()
        for i, choices in enumerate(self.layer_choices):
            if rng.random() < prob:
                child[i] = rng.choice(choices)
        return child

    def crossover(self, rng: np.random.Generator, a: Any, b: Any) -> np.ndarray:
        a, b = self.validate(a), self.validate(b)
        return np.where(rng.random(a.shape) < 0.5, a, b).astype(np.int32)

    # ---------------------------------------------------------- cost
    def _with(self, network: dict[str, Any]) -> "MobileNetSpace":
        """The space for ``network`` overrides: skeleton, input_size, num_classes."""
        unknown = sorted(set(network) - {"skeleton", "input_size", "num_classes"})
        if unknown:
            raise SearchSpaceError(f"unknown MobileNet cost setting(s) {unknown}; valid: skeleton, input_size, num_classes")
        space = self.configure(network.get("skeleton"))
        changes = {k: network[k] for k in ("input_size", "num_classes") if network.get(k) is not None}
        return MobileNetSpace(space.skeleton.replace(**changes)) if changes else space

    def cost(self, encoding: Any, **network: Any) -> Cost:
        """Params / multiply-adds (millions) in the ProxylessNAS convention (module docstring)."""
        params, flops = self.costs(np.asarray(encoding)[None], **network)
        return Cost(float(params[0]), float(flops[0]))

    def costs(self, encodings: Any, **network: Any) -> tuple[np.ndarray, np.ndarray]:
        space = self._with(network) if network else self
        enc = space.validate_batch(np.asarray(encodings))
        table = cost_table(space.skeleton)
        rows = np.arange(enc.shape[1])
        params = table.base_params + table.layer_params[rows, enc].sum(axis=1)
        flops = table.base_flops + table.layer_flops[rows, enc].sum(axis=1)
        return params / 1e6, flops / 1e6

    def exact_cost(self, encoding: Any) -> tuple[int, int]:
        """``(params, multiply-adds)`` as integers."""
        enc = self.validate(encoding)
        table = cost_table(self.skeleton)
        rows = np.arange(len(enc))
        return (int(table.base_params + table.layer_params[rows, enc].sum()),
                int(table.base_flops + table.layer_flops[rows, enc].sum()))


def parse_choices(items: Iterable[str], skeleton: str | Skeleton = DEFAULT_SKELETON) -> np.ndarray:
    """Many architecture strings -> ``(n, layers)`` encodings on ``skeleton``."""
    return MobileNetSpace(skeleton).parse_many(items)


SPACE = register(MobileNetSpace())
