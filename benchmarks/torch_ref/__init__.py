"""PyTorch reference for ``benchmarks/vs_pytorch.py`` (benchmark-only: needs the ``bench`` extra).

``network``: NAS-Bench-201's ``TinyNetwork`` (stand-alone, one architecture) with our Flax
supernet's weights ported into it; ``measures``: the zero-cost proxies, NASWOT, TE-NAS and
MC-BatchNorm computed the way their public reference code computes them. Nothing in
``fbnas_jax`` imports this package.
"""
