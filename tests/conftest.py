"""Shared fixtures: tiny datasets and configs so every test compiles small networks."""
from __future__ import annotations


import pytest

# The files that take minutes, longest first (seconds in one xdist worker, 2026-11-27, load 5-7:
# 1085, 1066, 811, 713, 615, 607 (torch installed; skipped in CI), 409, 405, 240 (cut by its old
# timeout), 205). README Quick start line 2 runs the suite in two workers, one file whole in one
# worker (`-n 2 --dist loadfile`), handing out files in collection order: with the long files
# first the two workers end together, instead of one running a long file alone at the end while
# the other idles.
LONG_FILES = ("test_nb201_protocol.py", "test_training_free.py", "test_training.py", "test_routing_grads.py",
              "test_balenas.py", "test_vs_pytorch.py", "test_execution.py", "test_routing.py", "test_host_finish.py",
              "test_teg.py")


def pytest_configure(config):
    # Compiled XLA programs are cached on disk: tests that build the same tiny network
    # (and a second CI run) load them instead of recompiling (5-20 s each on 2 cores).
    from fbnas_jax.runtime import enable_compilation_cache

    enable_compilation_cache()
    if hasattr(config.option, "loadscopereorder"):  # pytest-xdist: keep the order below, not
        config.option.loadscopereorder = False  # files by decreasing test count


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONG_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order


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
