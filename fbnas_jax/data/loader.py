"""``load_dataset``: one entry point for every data source."""
from __future__ import annotations

import os
from pathlib import Path

from fbnas_jax.data.dataset import Dataset, DatasetError, DatasetNotFoundError, subset_train
from fbnas_jax.data.image_folder import ARCHIVE_SUFFIXES, load_image_folder
from fbnas_jax.data.imagenet import STREAMING_NAMES, load_streaming
from fbnas_jax.data.synthetic import make_synthetic
from fbnas_jax.data.tfds_loader import TFDS_DATASETS, load_tfds

__all__ = ["load_dataset", "SYNTHETIC_NAMES", "SYNTHETIC_VARIANTS", "known_names"]

# Named settings of the embedded synthetic set. A name (not loose keywords) is what a run's
# config records, so scoring a workdir later regenerates exactly the images it was trained on.
# ``synthetic-easy`` is the demo's set: full colour cue, half-spread second colour (a BN-only
# net learns it within the demo's two minutes; see fbnas_jax/data/synthetic.py).
SYNTHETIC_VARIANTS = {
    "synthetic": {},
    "embedded": {},
    "synthetic-easy": {"colour_cue": 1.0, "second_colour_spread": 0.5},
}
SYNTHETIC_NAMES = tuple(SYNTHETIC_VARIANTS)


def known_names() -> list[str]:
    """Dataset names accepted by :func:`load_dataset` (besides paths)."""
    return [*SYNTHETIC_NAMES, *TFDS_DATASETS, *STREAMING_NAMES]


def _looks_like_path(source: str) -> bool:
    """Whether ``source`` was meant as a path rather than a dataset name."""
    return (
        os.sep in source
        or (os.altsep is not None and os.altsep in source)
        or source.startswith(("~", "."))
        or source.lower().endswith(ARCHIVE_SUFFIXES)
    )


def load_dataset(
    source: str | os.PathLike,
    *,
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    subset: int | None = None,
    seed: int = 0,
    image_size: int = 224,
) -> Dataset:
    """Load a dataset by name or path.

    Args:
      source: ``"synthetic"`` (alias ``"embedded"``), ``"synthetic-easy"`` (the demo's set), a TFDS
        name (``"cifar10"``, ``"cifar100"``, ``"imagenet16-120"``), ``"imagenet2012"`` (streamed from a
        prepared TFDS ``data_dir``: returns a :class:`~fbnas_jax.data.imagenet.StreamingDataset` whose
        crops are ``image_size``), or the path of an image-folder directory /
        ``.tar.gz`` archive with ``train/<class>/*.jpg`` and ``test/<class>/*.jpg``.
      data_dir: TFDS data directory holding the prepared dataset (TFDS names only).
      cache_dir: where decoded image folders are cached (default ``$FBNAS_CACHE_DIR`` or
        ``~/.cache/fbnas_jax``).
      subset: keep a class-balanced random subset of this many train images.
      seed: seed of the subset choice.

    Raises:
      DatasetNotFoundError: a path that does not exist (also a ``FileNotFoundError``).
      DatasetError: an unknown name or a malformed dataset (also a ``ValueError``).
    """
    text = os.fspath(source)
    key = text.lower()
    if key in STREAMING_NAMES:  # too large for memory: read batch by batch with tf.data
        if subset is not None:
            raise DatasetError(f"{text!r} is streamed; a class-balanced subset is not supported (drop data.subset)")
        return load_streaming(key, data_dir, image_size=image_size)
    if key in SYNTHETIC_NAMES:
        ds = make_synthetic(**SYNTHETIC_VARIANTS[key])
    elif key in TFDS_DATASETS:
        ds = load_tfds(key, data_dir=data_dir)
    elif Path(text).expanduser().exists():
        ds = load_image_folder(text, cache_dir=cache_dir)
    elif _looks_like_path(text):
        raise DatasetNotFoundError(
            f"dataset path not found: {text!r} (expected a directory or a .tar.gz archive "
            f"with train/<class>/*.jpg and test/<class>/*.jpg)"
        )
    else:
        raise DatasetError(
            f"unknown dataset {text!r}: not a known name ({', '.join(known_names())}) "
            f"and not an existing path"
        )
    if subset is not None:
        ds = subset_train(ds, subset, seed=seed)
    return ds
