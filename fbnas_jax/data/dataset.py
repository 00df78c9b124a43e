"""The in-memory :class:`Dataset` container and helpers that work on any dataset.

Images stay ``uint8`` in memory (CIFAR-10 is 150 MB as uint8 but 600 MB as float32);
they are normalised batch by batch in :mod:`fbnas_jax.data.batching`.
"""
from __future__ import annotations

import dataclasses

import numpy as np

__all__ = [
    "Dataset",
    "DatasetError",
    "DatasetNotFoundError",
    "channel_stats",
    "subset_train",
]


class DatasetError(ValueError):
    """A dataset cannot be loaded: unknown name, bad layout, unprepared TFDS data, ..."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """A dataset path (directory or archive) does not exist.

    Subclasses both :class:`DatasetError` and :class:`FileNotFoundError` so callers can
    catch either the library-specific or the standard exception.
    """


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """An image-classification dataset held fully in memory.

    Attributes:
      train_images, test_images: ``uint8`` arrays of shape ``(N, H, W, 3)``.
      train_labels, test_labels: ``int32`` arrays of shape ``(N,)`` in ``[0, num_classes)``.
      num_classes: number of classes.
      class_names: class names; index ``i`` is the name of label ``i``.
      mean, std: per-channel ``float32`` statistics of the train split in ``[0, 1]`` units,
        used by :func:`fbnas_jax.data.normalize`.
      name: human-readable name (for logs and reports).

    ``eq=False`` because element-wise array comparison is not a meaningful ``==``.
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    num_classes: int
    class_names: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray
    name: str

    def __post_init__(self) -> None:
        # Validate once here so that every loader gets the same guarantees and the
        # batching code can rely on them without re-checking.
        for split in ("train", "test"):
            images = getattr(self, f"{split}_images")
            labels = getattr(self, f"{split}_labels")
            if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
                raise DatasetError(
                    f"{self.name}: {split}_images must be uint8 (N, H, W, 3), "
                    f"got {images.dtype} {images.shape}"
                )
            if labels.dtype != np.int32 or labels.shape != images.shape[:1]:
                raise DatasetError(
                    f"{self.name}: {split}_labels must be int32 of shape {images.shape[:1]}, "
                    f"got {labels.dtype} {labels.shape}"
                )
            if labels.size and (labels.min() < 0 or labels.max() >= self.num_classes):
                raise DatasetError(
                    f"{self.name}: {split}_labels outside [0, {self.num_classes})"
                )
        if len(self.class_names) != self.num_classes:
            raise DatasetError(
                f"{self.name}: {len(self.class_names)} class names for {self.num_classes} classes"
            )
        if self.train_images.shape[1:] != self.test_images.shape[1:]:
            raise DatasetError(
                f"{self.name}: train images {self.train_images.shape[1:]} and test images "
                f"{self.test_images.shape[1:]} differ in shape"
            )
        object.__setattr__(self, "mean", np.asarray(self.mean, np.float32).reshape(3))
        object.__setattr__(self, "std", np.asarray(self.std, np.float32).reshape(3))
        object.__setattr__(self, "class_names", tuple(str(c) for c in self.class_names))

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(H, W, 3)`` of every image."""
        return tuple(self.train_images.shape[1:])  # type: ignore[return-value]

    @property
    def num_train(self) -> int:
        return int(self.train_images.shape[0])

    @property
    def num_test(self) -> int:
        return int(self.test_images.shape[0])

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, train={self.num_train}, test={self.num_test}, "
            f"image_shape={self.image_shape}, num_classes={self.num_classes})"
        )


def channel_stats(images: np.ndarray, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std of ``uint8`` images in ``[0, 1]`` units.

    Accumulates exact integer sums over chunks so that CIFAR-sized data never needs a
    full float copy (50k images would be 1.2 GB in float64).
    """
    if images.shape[0] == 0:
        raise DatasetError("cannot compute channel statistics of an empty split")
    total = np.zeros(3, np.float64)
    total_sq = np.zeros(3, np.float64)
    for start in range(0, images.shape[0], chunk):
        block = images[start : start + chunk].reshape(-1, 3)
        total += block.sum(axis=0, dtype=np.int64)
        total_sq += np.square(block, dtype=np.int32).sum(axis=0, dtype=np.int64)
    count = images.shape[0] * images.shape[1] * images.shape[2]
    mean = total / count
    var = np.maximum(total_sq / count - np.square(mean), 0.0)
    std = np.maximum(np.sqrt(var), 1e-3 * 255.0)  # guard against constant images
    return (mean / 255.0).astype(np.float32), (std / 255.0).astype(np.float32)


def balanced_subset_indices(labels: np.ndarray, n: int, num_classes: int, seed: int) -> np.ndarray:
    """Indices of a class-balanced random subset of size ``n`` (sorted, deterministic).

    Each class gets ``n // num_classes`` examples; the remainder goes to randomly chosen
    classes. Classes that are too small give what they have and the shortfall is filled
    from the other classes, so the result always has exactly ``n`` indices.
    """
    if not 0 < n <= labels.shape[0]:
        raise DatasetError(f"subset={n} must be in [1, {labels.shape[0]}] (the train split size)")
    rng = np.random.default_rng([seed, 0x5B5E7])
    per_class = [rng.permutation(np.flatnonzero(labels == c)) for c in range(num_classes)]
    quota = np.full(num_classes, n // num_classes)
    quota[rng.permutation(num_classes)[: n % num_classes]] += 1
    taken = [idx[:q] for idx, q in zip(per_class, quota)]
    shortfall = n - sum(t.size for t in taken)
    if shortfall:
        leftovers = rng.permutation(np.concatenate([idx[q:] for idx, q in zip(per_class, quota)]))
        taken.append(leftovers[:shortfall])
    return np.sort(np.concatenate(taken))


def subset_train(ds: Dataset, n: int, seed: int = 0) -> Dataset:
    """Return ``ds`` with a class-balanced random subset of ``n`` train images.

    Used by fast CPU runs. The test split and the normalisation statistics are kept
    unchanged, so results on a subset stay comparable with full-data runs.
    """
    idx = balanced_subset_indices(ds.train_labels, n, ds.num_classes, seed)
    return dataclasses.replace(
        ds,
        train_images=ds.train_images[idx],
        train_labels=ds.train_labels[idx],
        name=f"{ds.name}[subset={n},seed={seed}]",
    )
