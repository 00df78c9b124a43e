"""Batching, normalisation and augmentation, vectorised over the batch in NumPy.

Every random choice is derived from explicit integers ``(seed, epoch, batch index)``
rather than from a stateful generator. That makes the data order and the augmentation
of any batch a pure function of those integers, so a run resumed at ``start_batch``
sees exactly the batches an uninterrupted run would have seen.
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from fbnas_jax.data.dataset import Dataset, DatasetError

__all__ = [
    "Batch",
    "normalize",
    "epoch_permutation",
    "crop_and_flip",
    "augment_batch",
    "num_batches",
    "train_batches",
    "eval_batches",
]

Batch = dict[str, np.ndarray]
"""``{"image": float32 (B, H, W, 3) normalised, "label": int32 (B,)}``."""

# Distinct stream tags so the permutation and augmentation streams never coincide.
_PERM_STREAM = 0x9E3779B1
_AUG_STREAM = 0x7F4A7C15


def _check_non_negative(**values: int) -> None:
    for name, value in values.items():
        if int(value) < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")


def normalize(images_uint8: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """``(x / 255 - mean) / std`` as float32, computed as one fused multiply-add.

    ``mean``/``std`` are per-channel in ``[0, 1]`` units, as stored on :class:`Dataset`.
    """
    mean = np.asarray(mean, np.float32)
    std = np.asarray(std, np.float32)
    scale = (1.0 / (255.0 * std)).astype(np.float32)
    shift = (-mean / std).astype(np.float32)
    out = images_uint8.astype(np.float32)
    out *= scale
    out += shift
    return out


def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    """The example order of ``epoch``: a pure function of ``(seed, epoch, n)``."""
    _check_non_negative(seed=seed, epoch=epoch, n=n)
    return np.random.default_rng([int(seed), int(epoch), _PERM_STREAM]).permutation(n)


def crop_and_flip(
    images: np.ndarray, offsets_y: np.ndarray, offsets_x: np.ndarray, flips: np.ndarray, pad: int
) -> np.ndarray:
    """Zero-pad by ``pad``, crop at the given offsets, mirror where ``flips``; one gather.

    Offsets are in ``[0, 2 * pad]`` (``pad`` means no shift). Deterministic given its
    arguments, which is what the tests check; :func:`augment_batch` draws the arguments.
    """
    b, h, w, _ = images.shape
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    rows = offsets_y[:, None] + np.arange(h)[None, :]  # (B, H)
    col_idx = np.where(flips[:, None], np.arange(w - 1, -1, -1), np.arange(w))  # (B, W)
    cols = offsets_x[:, None] + col_idx
    return padded[np.arange(b)[:, None, None], rows[:, :, None], cols[:, None, :]]


def augment_batch(images: np.ndarray, rng: np.random.Generator, pad: int = 4) -> np.ndarray:
    """Standard CIFAR augmentation: random crop with zero padding ``pad`` + horizontal flip.

    Padding is applied to the raw uint8 images (black borders), as torchvision's
    ``RandomCrop(padding=4)`` does before ``Normalize``.
    """
    b = images.shape[0]
    offsets = rng.integers(0, 2 * pad + 1, size=(2, b))
    flips = rng.random(b) < 0.5
    return crop_and_flip(images, offsets[0], offsets[1], flips, pad)


def _split_arrays(ds: Dataset, split: str) -> tuple[np.ndarray, np.ndarray]:
    if split not in ("train", "test"):
        raise DatasetError(f"split must be 'train' or 'test', got {split!r}")
    return getattr(ds, f"{split}_images"), getattr(ds, f"{split}_labels")


def num_batches(
    ds: Dataset, batch_size: int, *, split: str = "train", drop_last: bool = True
) -> int:
    """Batches per epoch: floor for training (``drop_last``), ceil for evaluation.

    A streamed dataset (:class:`fbnas_jax.data.imagenet.StreamingDataset`) answers itself.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if getattr(ds, "streaming", False):
        n = ds.num_train if split == "train" else ds.num_test
        return n // batch_size if drop_last else -(-n // batch_size)
    n = _split_arrays(ds, split)[1].shape[0]
    return n // batch_size if drop_last else -(-n // batch_size)


def train_batches(
    ds: Dataset,
    batch_size: int,
    *,
    seed: int,
    epoch: int,
    augment: bool = True,
    drop_last: bool = True,
    start_batch: int = 0,
    pad: int = 4,
) -> Iterator[Batch]:
    """Yield the shuffled, augmented, normalised train batches of one epoch.

    Batch ``i`` depends only on ``(seed, epoch, i)``: resuming with ``start_batch=i``
    yields exactly the tail of the uninterrupted epoch. With ``drop_last`` every batch
    has the same shape, so a jitted train step compiles once.
    """
    _check_non_negative(start_batch=start_batch)
    if getattr(ds, "streaming", False):  # tf.data pipeline with its own (ImageNet) augmentation
        import jax  # several hosts: each reads only its share of every batch

        hosts, host = jax.process_count(), jax.process_index()
        yield from ds.train_batches(batch_size // hosts, seed=seed, epoch=epoch, augment=augment,
                                    start_batch=start_batch, shard=(host, hosts))
        return
    total = num_batches(ds, batch_size, split="train", drop_last=drop_last)
    if drop_last and total == 0:
        raise DatasetError(
            f"batch_size={batch_size} exceeds the {ds.num_train} train images of {ds.name}; "
            "no full batch can be formed"
        )
    perm = epoch_permutation(seed, epoch, ds.num_train)
    for b in range(start_batch, total):
        idx = perm[b * batch_size : (b + 1) * batch_size]
        images = ds.train_images[idx]
        if augment:
            rng = np.random.default_rng([int(seed), int(epoch), b, _AUG_STREAM])
            images = augment_batch(images, rng, pad=pad)
        yield {"image": normalize(images, ds.mean, ds.std), "label": ds.train_labels[idx]}


def eval_batches(ds: Dataset, batch_size: int, split: str = "test") -> Iterator[Batch]:
    """Yield normalised batches in dataset order, without augmentation.

    The last batch may be smaller; callers that need a fixed shape can pad it.
    """
    if getattr(ds, "streaming", False):
        yield from ds.eval_batches(batch_size, split=split)
        return
    images, labels = _split_arrays(ds, split)
    for b in range(num_batches(ds, batch_size, split=split, drop_last=False)):
        sl = slice(b * batch_size, (b + 1) * batch_size)
        yield {"image": normalize(images[sl], ds.mean, ds.std), "label": labels[sl]}
