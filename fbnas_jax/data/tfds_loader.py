"""TensorFlow-Datasets loaders (``cifar10``, ``cifar100``, ``imagenet16-120``).

TensorFlow is imported inside :func:`load_tfds` only, so ``import fbnas_jax.data`` stays
free of it. Nothing is ever downloaded: the data must already be prepared in
``data_dir`` (e.g. with ``tfds build`` on a machine with internet), because this library
is used on machines where TFDS downloads are impossible and a silent multi-GB download
attempt would only fail late.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np

from fbnas_jax.data.dataset import Dataset, DatasetError, channel_stats

__all__ = ["TfdsSpec", "TFDS_DATASETS", "load_tfds"]


@dataclasses.dataclass(frozen=True)
class TfdsSpec:
    """How one of our dataset names maps to TFDS.

    ``max_classes`` keeps only labels below it (ImageNet16-120 is the first 120 classes
    of ImageNet 16x16, as in NAS-Bench-201).
    """

    tfds_name: str
    train_split: str = "train"
    test_split: str = "test"
    max_classes: int | None = None


TFDS_DATASETS: dict[str, TfdsSpec] = {
    "cifar10": TfdsSpec("cifar10"),
    "cifar100": TfdsSpec("cifar100"),
    "imagenet16-120": TfdsSpec(
        "imagenet_resized/16x16", test_split="validation", max_classes=120
    ),
}

_CHUNK = 10_000  # examples per tf.data batch when converting to NumPy


def _split_to_numpy(builder, split: str, max_classes: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Read one split as ``(uint8 images, int32 labels)``, filtering classes in tf.data.

    Filtering before batching means ImageNet's 1.28M images never all sit in memory
    when only the 120-class subset is wanted.
    """
    import tensorflow_datasets as tfds

    ds = builder.as_dataset(split=split, as_supervised=True, shuffle_files=False)
    if max_classes is not None:
        ds = ds.filter(lambda image, label: label < max_classes)
    images, labels = [], []
    for x, y in tfds.as_numpy(ds.batch(_CHUNK)):
        images.append(np.asarray(x, np.uint8))
        labels.append(np.asarray(y, np.int32))
    if not images:
        raise DatasetError(f"TFDS {builder.info.full_name} split {split!r} has no examples")
    x = np.concatenate(images)
    if x.ndim == 3:  # grayscale datasets decode to (N, H, W)
        x = x[..., None]
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    return x, np.concatenate(labels)


def load_tfds(name: str, data_dir: str | os.PathLike | None = None) -> Dataset:
    """Load a prepared TFDS dataset by our name (see :data:`TFDS_DATASETS`).

    Raises:
      DatasetError: unknown name, TFDS not installed, or data not prepared in ``data_dir``.
    """
    spec = TFDS_DATASETS.get(name)
    if spec is None:
        raise DatasetError(f"unknown TFDS dataset {name!r}; known: {sorted(TFDS_DATASETS)}")
    try:
        import tensorflow_datasets as tfds
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise DatasetError(
            f"loading {name!r} needs tensorflow-datasets and tensorflow: {exc}"
        ) from exc

    data_dir = os.fspath(data_dir) if data_dir is not None else None
    builder = tfds.builder(spec.tfds_name, data_dir=data_dir)
    if not builder.is_prepared():
        raise DatasetError(
            f"TFDS dataset {spec.tfds_name!r} is not prepared in {builder.data_dir!r}. "
            f"This library never downloads: prepare it where internet is available "
            f"(e.g. `tfds build {spec.tfds_name} --data_dir <dir>`) and pass that data_dir, "
            f"or use an image-folder archive or the 'synthetic' dataset."
        )
    train_x, train_y = _split_to_numpy(builder, spec.train_split, spec.max_classes)
    test_x, test_y = _split_to_numpy(builder, spec.test_split, spec.max_classes)

    names = list(builder.info.features["label"].names)
    num_classes = len(names)
    if spec.max_classes is not None:
        num_classes = min(num_classes, spec.max_classes)
        names = names[:num_classes]
    mean, std = channel_stats(train_x)
    return Dataset(
        train_images=train_x,
        train_labels=train_y,
        test_images=test_x,
        test_labels=test_y,
        num_classes=num_classes,
        class_names=tuple(names),
        mean=mean,
        std=std,
        name=name,
    )
