"""``fbnas_jax.runtime.enable_compilation_cache``: a cache that parallel processes can share."""
from __future__ import annotations

import jax

from fbnas_jax.runtime import COMPILATION_CACHE_MAX_BYTES, _backfill_access_times


def test_test_session_cache_is_locked():
    # conftest enabled the cache; a size limit is what makes JAX lock every read and write, so
    # the parallel test workers never read an entry that the other one is still writing.
    assert jax.config.jax_compilation_cache_dir
    assert jax.config.jax_compilation_cache_max_size == COMPILATION_CACHE_MAX_BYTES


def test_entries_of_an_unlimited_cache_get_access_times(tmp_path):
    (tmp_path / "old-cache").write_bytes(b"x")  # written by an unlocked (unlimited) cache
    (tmp_path / "new-cache").write_bytes(b"y")
    (tmp_path / "new-atime").write_bytes((7).to_bytes(8, "little"))
    _backfill_access_times(tmp_path)
    assert len((tmp_path / "old-atime").read_bytes()) == 8
    assert (tmp_path / "new-atime").read_bytes() == (7).to_bytes(8, "little")  # kept
