"""Shared fixtures: tiny datasets and configs so every test compiles small networks."""
from __future__ import annotations


import pytest



def pytest_configure(config):
    # Compiled XLA programs are cached on disk: tests that build the same tiny network
    # (and a second CI run) load them instead of recompiling (5-20 s each on 2 cores).
    from fbnas_jax.runtime import enable_compilation_cache

    enable_compilation_cache()


@pytest.fixture(scope="session")
def tiny_dataset():
    from fbnas_jax.data import make_synthetic

    return make_synthetic(num_train=256, num_test=64, image_size=16, seed=0)


TINY_OVERRIDES = [
    "model.channels=4", "model.cells_per_stage=1", "train.batch_size=32", "train.epochs=1",
    "train.log_every=1", "train.learning_rate=0.2",
]


@pytest.fixture(scope="session")
def tiny_config():
    from fbnas_jax.config import load_config

    def make(*extra: str):
        return load_config(None, TINY_OVERRIDES + list(extra))

    return make
