"""Score-column names: ``<indicator>[@<network>]`` (project convention).

A column of the scores CSV is the registered indicator name, optionally suffixed with
``@<tag>`` naming the network it was computed on:

* supernet indicators (``gamma``, ``trainability``, ``expressivity``, ``uncertainty``,
  ``supernet_accuracy``, ...) and the composite ``cpi`` are read off a *trained* supernet and
  always carry its tag: ``bnnas`` (BN-NAS placement, SPOS), ``fair`` (FBN placement, SPOS),
  ``fairnas`` (FBN placement, FairNAS sampling) -- e.g. ``gamma@bnnas``, ``cpi@fair``;
* training-free indicators (``naswot``, ``synflow``, ...) are computed on a *freshly
  initialised* network. Without a tag it is the standard NB201 network (``bn_mode=bnnas``:
  the network these proxies are published on); ``@fair`` names the FBN-placement network
  (an extra BN after every skip/pool op) -- an explicitly named extra, e.g. ``naswot@fair``;
* cost indicators (``params``, ``flops``) carry no tag.
"""
from __future__ import annotations

import dataclasses

TRAINED = ("bnnas", "fair", "fairnas")  # supernets the benchmark trains (tag -> run)
FRESH = {None: "bnnas", "fair": "fair"}  # training-free tag -> BN placement of the fresh network


class ColumnError(ValueError):
    """A score-column name that does not follow ``<indicator>[@<network>]``."""


@dataclasses.dataclass(frozen=True)
class Column:
    name: str  # as written in the CSV
    indicator: str  # registered indicator name
    family: str  # registry family: supernet | composite | training_free | cost
    network: str | None  # trained tag (bnnas|fair|fairnas), fresh placement (bnnas|fair), or None (cost)
    fresh: bool  # computed on a freshly initialised network

    @property
    def context_key(self) -> str | None:
        """Which scoring context serves it: ``"bnnas"`` (trained) or ``"fresh:bnnas"`` etc."""
        if self.network is None:
            return None
        return f"fresh:{self.network}" if self.fresh else self.network


def parse(name: str) -> Column:
    from fbnas_jax.indicators import base
    import fbnas_jax.indicators  # noqa: F401  (registers every indicator)

    indicator, _, tag = name.partition("@")
    tag = tag or None
    try:
        family = base.get(indicator).family
    except base.UnknownIndicatorError as err:
        raise ColumnError(f"column {name!r}: {err.args[0]}") from None
    if family in ("supernet", "composite"):
        if tag not in TRAINED:
            raise ColumnError(f"column {name!r}: {indicator!r} is read off a trained supernet; name it "
                              f"{indicator}@<{'|'.join(TRAINED)}>")
        return Column(name, indicator, family, tag, False)
    if family == "training_free":
        if tag not in FRESH:
            raise ColumnError(f"column {name!r}: a training-free indicator is computed on the standard "
                              f"network ({indicator}) or on the fair-placement one ({indicator}@fair)")
        return Column(name, indicator, family, FRESH[tag], True)
    if tag is not None:
        raise ColumnError(f"column {name!r}: cost indicators take no network tag")
    return Column(name, indicator, family, None, False)


def parse_all(names) -> list[Column]:
    """Parsed columns in order, each composite's components inserted before it if missing."""
    from fbnas_jax.indicators import base

    out: list[Column] = []
    seen: set[str] = set()
    for name in names:
        col = parse(name)
        if col.family == "composite":
            for comp in base.get(col.indicator).components:
                dep = f"{comp}@{col.network}"
                if dep not in seen:
                    out.append(parse(dep))
                    seen.add(dep)
        if col.name in seen:
            raise ColumnError(f"column {name!r} listed twice")
        out.append(col)
        seen.add(col.name)
    return out
