"""ImageNet (TFDS ``imagenet2012``) streamed batch by batch, with the usual augmentation.

ImageNet does not fit in memory as the in-memory :class:`~fbnas_jax.data.Dataset` does, so
:class:`StreamingDataset` reads the prepared TFDS files with ``tf.data`` and yields NumPy
batches. Nothing is downloaded: ``data_dir`` must hold ``imagenet2012`` already prepared
(``tfds build imagenet2012 --manual_dir <tars> --data_dir <dir>`` where the tars are).

Preprocessing (the ResNet/Inception recipe of the flax and big_vision ImageNet examples):

* train: decode a random crop covering 8-100 % of the image with aspect ratio 3/4-4/3
  (``sample_distorted_bounding_box``, 10 attempts, else the centre crop), resize to
  ``image_size`` (bilinear), random horizontal flip;
* eval: centre crop of ``image_size / (image_size + 32)`` of the shorter side, resize;
* normalise with the ImageNet channel mean / std.

Randomness is a function of ``(seed, epoch, example index)`` (stateless TF ops, a seeded
file order and shuffle buffer, deterministic tf.data), so a run resumed at ``start_batch``
sees the batches an uninterrupted one would. ``shard=(index, count)`` gives each host of a
multi-host run its own disjoint part of every epoch. TensorFlow is imported lazily.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator

import numpy as np

from fbnas_jax.data.dataset import Dataset, DatasetError

IMAGENET_MEAN = np.asarray([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.asarray([0.229, 0.224, 0.225], np.float32)
STREAMING_NAMES = {"imagenet2012": ("imagenet2012", "train", "validation"),
                   "imagenet": ("imagenet2012", "train", "validation")}


@dataclasses.dataclass(frozen=True, eq=False)
class StreamingDataset:
    """A TFDS image-classification dataset read with tf.data (see the module docstring)."""

    name: str
    tfds_name: str
    data_dir: str | None
    train_split: str
    test_split: str
    num_classes: int
    class_names: tuple[str, ...]
    num_train: int
    num_test: int
    image_size: int = 224
    shuffle_buffer: int = 16_384
    mean: np.ndarray = dataclasses.field(default_factory=lambda: IMAGENET_MEAN)
    std: np.ndarray = dataclasses.field(default_factory=lambda: IMAGENET_STD)

    streaming = True

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.image_size, self.image_size, 3)

    # ------------------------------------------------------------------ tf.data
    def _builder(self):
        import tensorflow_datasets as tfds

        return tfds.builder(self.tfds_name, data_dir=self.data_dir)

    def _read(self, split: str, *, shuffle_seed: int | None, shard: tuple[int, int]):
        import tensorflow as tf
        import tensorflow_datasets as tfds

        read_config = tfds.ReadConfig(shuffle_seed=shuffle_seed, interleave_cycle_length=16,
                                      options=_deterministic_options(tf))
        ds = self._builder().as_dataset(split=split, shuffle_files=shuffle_seed is not None,
                                        decoders={"image": tfds.decode.SkipDecoding()}, read_config=read_config)
        index, count = shard
        if count > 1:
            ds = ds.shard(count, index)
        return ds

    def _pipeline(self, split: str, batch_size: int, *, train: bool, seed: int, epoch: int,
                  start_batch: int, shard: tuple[int, int], drop_remainder: bool):
        import tensorflow as tf

        ds = self._read(split, shuffle_seed=(seed * 1_000_003 + epoch) % (2**31) if train else None, shard=shard)
        if train:
            ds = ds.shuffle(self.shuffle_buffer, seed=(seed * 7_919 + epoch) % (2**31), reshuffle_each_iteration=False)
        ds = ds.enumerate()
        size = self.image_size

        def process(i, example):
            key = tf.stack([tf.cast(seed * 100_003 + epoch, tf.int64), tf.cast(i, tf.int64)])
            image = (_train_image(tf, example["image"], size, key) if train
                     else _eval_image(tf, example["image"], size))
            image = (tf.cast(image, tf.float32) / 255.0 - self.mean) / self.std
            return {"image": image, "label": tf.cast(example["label"], tf.int32)}

        ds = ds.map(process, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        ds = ds.batch(batch_size, drop_remainder=drop_remainder)
        if start_batch:
            ds = ds.skip(start_batch)
        return ds.prefetch(tf.data.AUTOTUNE)

    # ------------------------------------------------------------------ batches
    def train_batches(self, batch_size: int, *, seed: int = 0, epoch: int = 0, augment: bool = True,
                      start_batch: int = 0, shard: tuple[int, int] = (0, 1)) -> Iterator[dict]:
        """Full batches of ``epoch`` (augmented unless ``augment=False``), from ``start_batch``."""
        import tensorflow_datasets as tfds

        ds = self._pipeline(self.train_split, batch_size, train=augment, seed=seed, epoch=epoch,
                            start_batch=start_batch, shard=shard, drop_remainder=True)
        yield from tfds.as_numpy(ds)

    def eval_batches(self, batch_size: int, split: str = "test", shard: tuple[int, int] = (0, 1)) -> Iterator[dict]:
        """Every example of ``split`` ("test" = the validation set, or "train") once, in order."""
        import tensorflow_datasets as tfds

        if split not in ("train", "test"):
            raise DatasetError(f"split must be 'train' or 'test', got {split!r}")
        name = self.test_split if split == "test" else self.train_split
        ds = self._pipeline(name, batch_size, train=False, seed=0, epoch=0, start_batch=0, shard=shard,
                            drop_remainder=False)
        yield from tfds.as_numpy(ds)

    def num_batches(self, batch_size: int, shard_count: int = 1) -> int:
        return self.num_train // shard_count // batch_size

    def in_memory(self, num_train: int, num_test: int = 0) -> Dataset:
        """The first ``num_train`` / ``num_test`` examples, centre-cropped, as an in-memory
        :class:`Dataset` (uint8): the small fixed batches supernet indicators score on."""
        import tensorflow_datasets as tfds

        def take(split, n):
            if n == 0:
                return (np.zeros((0,) + self.image_shape, np.uint8), np.zeros((0,), np.int32))
            ds = self._read(split, shuffle_seed=None, shard=(0, 1)).take(n)
            import tensorflow as tf

            ds = ds.map(lambda ex: (tf.cast(_eval_image(tf, ex["image"], self.image_size), tf.uint8),
                                    tf.cast(ex["label"], tf.int32))).batch(max(n, 1))
            x, y = next(iter(tfds.as_numpy(ds)))
            return np.asarray(x, np.uint8), np.asarray(y, np.int32)

        train_x, train_y = take(self.train_split, num_train)
        test_x, test_y = take(self.test_split, num_test)
        return Dataset(train_images=train_x, train_labels=train_y, test_images=test_x, test_labels=test_y,
                       num_classes=self.num_classes, class_names=self.class_names, mean=self.mean, std=self.std,
                       name=f"{self.name}[{num_train}+{num_test}]")


def _deterministic_options(tf):
    options = tf.data.Options()
    options.deterministic = True
    return options


def _train_image(tf, jpeg, size: int, key):
    """Inception random-resized crop (decoded from the JPEG directly) + flip."""
    shape = tf.io.extract_jpeg_shape(jpeg)
    begin, crop, _ = tf.image.stateless_sample_distorted_bounding_box(
        shape, bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], tf.float32, [1, 1, 4]), seed=key,
        min_object_covered=0.1, aspect_ratio_range=(3 / 4, 4 / 3), area_range=(0.08, 1.0), max_attempts=10,
        use_image_if_no_bounding_boxes=True)
    y, x, _ = tf.unstack(begin)
    h, w, _ = tf.unstack(crop)
    image = tf.image.decode_and_crop_jpeg(jpeg, tf.stack([y, x, h, w]), channels=3)
    image = tf.image.resize(image, [size, size], method="bilinear")
    return tf.image.stateless_random_flip_left_right(image, seed=key + tf.constant([0, 1], tf.int64))


def _eval_image(tf, jpeg, size: int):
    """Centre crop of ``size / (size + 32)`` of the shorter side, resized to ``size``."""
    shape = tf.io.extract_jpeg_shape(jpeg)
    h, w = shape[0], shape[1]
    crop = tf.cast(size / (size + 32) * tf.cast(tf.minimum(h, w), tf.float32), tf.int32)
    y, x = (h - crop + 1) // 2, (w - crop + 1) // 2
    image = tf.image.decode_and_crop_jpeg(jpeg, tf.stack([y, x, crop, crop]), channels=3)
    return tf.image.resize(image, [size, size], method="bilinear")


def load_streaming(name: str, data_dir: str | os.PathLike | None = None, *, image_size: int = 224) -> StreamingDataset:
    """``imagenet2012`` (alias ``imagenet``) from a prepared TFDS ``data_dir`` (never downloaded)."""
    key = name.lower()
    if key not in STREAMING_NAMES:
        raise DatasetError(f"unknown streaming dataset {name!r}; known: {sorted(STREAMING_NAMES)}")
    tfds_name, train_split, test_split = STREAMING_NAMES[key]
    try:
        import tensorflow_datasets as tfds
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise DatasetError(f"loading {name!r} needs tensorflow-datasets and tensorflow: {exc}") from exc
    data_dir = os.fspath(data_dir) if data_dir is not None else None
    builder = tfds.builder(tfds_name, data_dir=data_dir)
    if not builder.is_prepared():
        raise DatasetError(
            f"TFDS dataset {tfds_name!r} is not prepared in {builder.data_dir!r}. This library never downloads: "
            f"prepare it (`tfds build {tfds_name} --manual_dir <dir with the ILSVRC2012 tars> --data_dir <dir>`) "
            f"and pass that data_dir (data.data_dir)")
    info = builder.info
    return StreamingDataset(
        name=key, tfds_name=tfds_name, data_dir=data_dir, train_split=train_split, test_split=test_split,
        num_classes=info.features["label"].num_classes, class_names=tuple(info.features["label"].names),
        num_train=info.splits[train_split].num_examples, num_test=info.splits[test_split].num_examples,
        image_size=int(image_size))
