"""Datasets and input pipelines.

Sources: the embedded ``synthetic`` dataset (no download), local image-folder
directories/archives (decoded once into an ``.npz`` cache), and prepared TFDS datasets.
Images stay ``uint8`` in memory; :func:`train_batches` / :func:`eval_batches` normalise
and augment whole batches in NumPy, with all randomness derived from
``(seed, epoch, batch index)`` so runs are reproducible and resumable.

Importing this package does not import TensorFlow; only :func:`load_tfds` does, lazily.

Example::

    from fbnas_jax.data import load_dataset, train_batches
    ds = load_dataset("synthetic", subset=1000)
    for batch in train_batches(ds, 128, seed=0, epoch=0):
        batch["image"].shape  # (128, 32, 32, 3) float32
"""
from fbnas_jax.data.batching import (
    Batch,
    augment_batch,
    crop_and_flip,
    epoch_permutation,
    eval_batches,
    normalize,
    num_batches,
    train_batches,
)
from fbnas_jax.data.dataset import (
    Dataset,
    DatasetError,
    DatasetNotFoundError,
    channel_stats,
    subset_train,
)
from fbnas_jax.data.image_folder import cache_path_for, default_cache_dir, load_image_folder
from fbnas_jax.data.loader import known_names, load_dataset
from fbnas_jax.data.synthetic import make_synthetic
from fbnas_jax.data.tfds_loader import TFDS_DATASETS, load_tfds

__all__ = [
    "Batch",
    "Dataset",
    "DatasetError",
    "DatasetNotFoundError",
    "TFDS_DATASETS",
    "augment_batch",
    "cache_path_for",
    "channel_stats",
    "crop_and_flip",
    "default_cache_dir",
    "epoch_permutation",
    "eval_batches",
    "known_names",
    "load_dataset",
    "load_image_folder",
    "load_tfds",
    "make_synthetic",
    "normalize",
    "num_batches",
    "subset_train",
    "train_batches",
]
