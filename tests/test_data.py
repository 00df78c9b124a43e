"""Tests for fbnas_jax.data: loaders, cache, batching, augmentation, TFDS path."""
from __future__ import annotations

import importlib
import importlib.resources
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from fbnas_jax import data
from fbnas_jax.data import image_folder

# --------------------------------------------------------------------------- helpers

# Deliberately not created in sorted order, to check that class order is sorted.
FOLDER_CLASSES = {"cat": (200, 30, 30), "ant": (30, 200, 30), "bee": (30, 30, 200)}
N_TRAIN_PER_CLASS, N_TEST_PER_CLASS = 4, 2


def _write_image_folder(root: Path) -> Path:
    """A tiny train/<class>/*.jpg, test/<class>/*.jpg tree with one solid colour per class."""
    from PIL import Image

    for split, n in (("train", N_TRAIN_PER_CLASS), ("test", N_TEST_PER_CLASS)):
        for cls, colour in FOLDER_CLASSES.items():
            d = root / split / cls
            d.mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (8, 6), colour).save(d / f"{i:03d}.jpg", quality=95)
    return root


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    return _write_image_folder(tmp_path / "tiny")


@pytest.fixture()
def archive(tmp_path: Path) -> Path:
    """The same tree as a .tar.gz, wrapped in a top-level folder and shuffled member order."""
    src = _write_image_folder(tmp_path / "src" / "tiny")
    path = tmp_path / "tiny.tar.gz"
    files = sorted(p for p in src.rglob("*") if p.is_file())
    rng = np.random.default_rng(0)
    with tarfile.open(path, "w:gz") as tar:
        for i in rng.permutation(len(files)):
            tar.add(files[i], arcname=str(files[i].relative_to(src.parent)))
    return path


# --------------------------------------------------------------------------- import hygiene


def test_import_does_not_pull_in_tensorflow() -> None:
    code = (
        "import sys, fbnas_jax.data; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tensorflow_datasets')]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------- synthetic


def test_synthetic_is_deterministic_with_expected_shapes() -> None:
    a = data.load_dataset("synthetic")
    assert data.load_dataset("embedded") is not None
    b = data.make_synthetic.__wrapped__()  # bypass the memo: regenerate from scratch
    assert (a.num_train, a.num_test, a.image_shape, a.num_classes) == (5000, 1000, (32, 32, 3), 10)
    assert a.train_images.dtype == np.uint8 and a.train_labels.dtype == np.int32
    for field in ("train_images", "train_labels", "test_images", "test_labels", "mean", "std"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert a.train_labels.min() == 0 and a.train_labels.max() == 9
    assert np.bincount(a.train_labels).tolist() == [500] * 10
    assert len(a.class_names) == 10
    assert not a.train_images.flags.writeable, "memoised arrays must be read-only"
    assert a.mean.shape == a.std.shape == (3,) and a.mean.dtype == np.float32
    assert np.all((a.mean > 0.2) & (a.mean < 0.8)) and np.all(a.std > 0.05)
    # A weak class-colour cue: class mean colours differ, but within a class the image
    # colours vary more than the class means do (half of the colour is random).
    per_image = a.train_images.reshape(a.num_train, -1, 3).mean(1)
    class_means = np.stack([per_image[a.train_labels == c].mean(0) for c in range(10)])
    within = np.mean([per_image[a.train_labels == c].std(0).mean() for c in range(10)])
    assert np.ptp(class_means, axis=0).max() > 12
    assert within > class_means.std(0).mean()


def test_subset_is_class_balanced_and_seeded() -> None:
    full = data.load_dataset("synthetic")
    s1 = data.load_dataset("synthetic", subset=203, seed=1)
    s1b = data.load_dataset("synthetic", subset=203, seed=1)
    s2 = data.load_dataset("synthetic", subset=203, seed=2)
    assert s1.num_train == 203 and s1.num_test == full.num_test
    counts = np.bincount(s1.train_labels, minlength=10)
    assert counts.sum() == 203 and counts.max() - counts.min() <= 1
    np.testing.assert_array_equal(s1.train_images, s1b.train_images)
    assert not np.array_equal(s1.train_images, s2.train_images)
    np.testing.assert_array_equal(s1.mean, full.mean)  # normalisation stays the full-data one
    with pytest.raises(data.DatasetError, match="subset"):
        data.load_dataset("synthetic", subset=10**6)


# --------------------------------------------------------------------------- image folder


def _check_tiny(ds: data.Dataset) -> None:
    assert ds.class_names == ("ant", "bee", "cat")
    assert (ds.num_train, ds.num_test, ds.image_shape) == (12, 6, (6, 8, 3))
    assert np.bincount(ds.train_labels).tolist() == [N_TRAIN_PER_CLASS] * 3
    assert np.bincount(ds.test_labels).tolist() == [N_TEST_PER_CLASS] * 3
    for images, labels in ((ds.train_images, ds.train_labels), (ds.test_images, ds.test_labels)):
        for img, label in zip(images, labels):
            expected = FOLDER_CLASSES[ds.class_names[label]]
            assert np.abs(img.reshape(-1, 3).mean(0) - expected).max() < 4
    expected_mean = np.mean(list(FOLDER_CLASSES.values()), axis=0) / 255
    np.testing.assert_allclose(ds.mean, expected_mean, atol=0.02)


def test_image_folder_directory(folder: Path, tmp_path: Path) -> None:
    _check_tiny(data.load_dataset(str(folder), cache_dir=tmp_path / "cache"))


def test_image_folder_archive_matches_directory(
    folder: Path, archive: Path, tmp_path: Path
) -> None:
    from_tar = data.load_dataset(archive, cache_dir=tmp_path / "cache")
    _check_tiny(from_tar)
    from_dir = data.load_dataset(folder, cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(from_tar.train_images, from_dir.train_images)
    np.testing.assert_array_equal(from_tar.test_labels, from_dir.test_labels)
    assert from_tar.name == "tiny"


def test_image_folder_cache_is_reused_and_invalidated(
    archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache_dir = tmp_path / "cache"
    calls = {"n": 0}
    real_decode = image_folder.decode_image

    def counting_decode(blob: bytes) -> np.ndarray:
        calls["n"] += 1
        return real_decode(blob)

    monkeypatch.setattr(image_folder, "decode_image", counting_decode)
    first = data.load_dataset(archive, cache_dir=cache_dir)
    assert calls["n"] == 18
    assert data.cache_path_for(archive, cache_dir).exists()

    second = data.load_dataset(archive, cache_dir=cache_dir)
    assert calls["n"] == 18, "second load must read the cache, not decode"
    np.testing.assert_array_equal(first.train_images, second.train_images)
    assert first.class_names == second.class_names

    # A changed archive (new mtime) gets a new cache key, so it is decoded again.
    st = archive.stat()
    os.utime(archive, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    data.load_dataset(archive, cache_dir=cache_dir)
    assert calls["n"] == 36


def test_corrupt_cache_is_rebuilt(archive: Path, tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    cache = data.cache_path_for(archive, cache_dir)
    cache.parent.mkdir(parents=True)
    cache.write_bytes(b"not an npz")
    with pytest.warns(UserWarning, match="unreadable dataset cache"):
        _check_tiny(data.load_dataset(archive, cache_dir=cache_dir))


def test_default_cache_dir_honours_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FBNAS_CACHE_DIR", str(tmp_path / "c"))
    assert data.default_cache_dir() == tmp_path / "c"


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("source", ["/no/such/dir", "missing-archive.tar.gz", "./nope"])
def test_missing_path_is_a_clear_error(source: str) -> None:
    with pytest.raises(data.DatasetNotFoundError, match="dataset path not found") as info:
        data.load_dataset(source)
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, ValueError)


def test_unknown_name_is_a_clear_error() -> None:
    with pytest.raises(data.DatasetError, match=r"unknown dataset 'cifar11'.*synthetic.*cifar10"):
        data.load_dataset("cifar11")


def test_bad_layout_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "empty" / "train").mkdir(parents=True)
    with pytest.raises(data.DatasetError, match="no images found under 'train/<class>/'"):
        data.load_dataset(tmp_path / "empty", cache_dir=tmp_path / "cache")
    not_archive = tmp_path / "x.zip"
    not_archive.write_bytes(b"")
    with pytest.raises(data.DatasetError, match="neither a directory nor an archive"):
        data.load_dataset(not_archive)


def test_test_class_missing_from_train_is_an_error(folder: Path, tmp_path: Path) -> None:
    (folder / "test" / "cat").rename(folder / "test" / "zebra")
    with pytest.raises(data.DatasetError, match="zebra"):
        data.load_dataset(folder, cache_dir=tmp_path / "cache")


# --------------------------------------------------------------------------- augmentation


def _random_images(n: int = 16, h: int = 12, w: int = 10) -> np.ndarray:
    return np.random.default_rng(0).integers(1, 256, (n, h, w, 3), dtype=np.uint8)


def test_crop_and_flip_identity_and_flip() -> None:
    imgs = _random_images()
    n, pad = imgs.shape[0], 4
    centre = np.full(n, pad)
    no = np.zeros(n, bool)
    np.testing.assert_array_equal(data.crop_and_flip(imgs, centre, centre, no, pad), imgs)
    flipped = data.crop_and_flip(imgs, centre, centre, ~no, pad)
    np.testing.assert_array_equal(flipped, imgs[:, :, ::-1])


def _shift(img: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``img`` moved by (dy, dx) with zero fill: out[y, x] = img[y + dy, x + dx]."""
    h, w, _ = img.shape
    out = np.zeros_like(img)
    ys, xs = slice(max(0, -dy), min(h, h - dy)), slice(max(0, -dx), min(w, w - dx))
    out[ys, xs] = img[max(0, dy) : min(h, h + dy), max(0, dx) : min(w, w + dx)]
    return out


def test_augment_batch_is_a_shift_and_maybe_a_flip() -> None:
    imgs = _random_images(n=64)
    out = data.augment_batch(imgs, np.random.default_rng(123), pad=4)
    assert out.shape == imgs.shape and out.dtype == np.uint8
    flips, shifted = 0, 0
    for orig, aug in zip(imgs, out):
        matches = [
            (dy, dx, flip)
            for flip in (False, True)
            for dy in range(-4, 5)
            for dx in range(-4, 5)
            if np.array_equal(aug, _shift(orig[:, ::-1] if flip else orig, dy, dx))
        ]
        assert len(matches) == 1, "each output must be exactly one shift (+ optional flip)"
        dy, dx, flip = matches[0]
        flips += flip
        shifted += (dy, dx) != (0, 0)
    assert 10 < flips < 54, "flip should happen for roughly half the images"
    assert shifted > 40


# --------------------------------------------------------------------------- batching


def test_normalize_matches_formula() -> None:
    imgs = _random_images(n=3)
    mean = np.array([0.4, 0.5, 0.6], np.float32)
    std = np.array([0.2, 0.25, 0.3], np.float32)
    out = data.normalize(imgs, mean, std)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, (imgs / 255.0 - mean) / std, rtol=1e-5, atol=1e-5)


def test_epoch_permutation_is_reproducible() -> None:
    p = data.epoch_permutation(7, 3, 1000)
    np.testing.assert_array_equal(p, data.epoch_permutation(7, 3, 1000))
    assert sorted(p.tolist()) == list(range(1000))
    assert not np.array_equal(p, data.epoch_permutation(7, 4, 1000))
    assert not np.array_equal(p, data.epoch_permutation(8, 3, 1000))
    with pytest.raises(ValueError):
        data.epoch_permutation(-1, 0, 10)


@pytest.fixture(scope="module")
def small() -> data.Dataset:
    return data.load_dataset("synthetic", subset=330, seed=0)


def test_train_batches_shapes_and_counts(small: data.Dataset) -> None:
    batches = list(data.train_batches(small, 64, seed=0, epoch=0))
    assert len(batches) == data.num_batches(small, 64) == 5
    for b in batches:
        assert b["image"].shape == (64, 32, 32, 3) and b["image"].dtype == np.float32
        assert b["label"].shape == (64,) and b["label"].dtype == np.int32
    kept = np.concatenate([b["label"] for b in batches])
    perm = data.epoch_permutation(0, 0, small.num_train)
    np.testing.assert_array_equal(kept, small.train_labels[perm[:320]])
    partial = list(data.train_batches(small, 64, seed=0, epoch=0, drop_last=False))
    assert len(partial) == 6 and partial[-1]["label"].shape == (10,)
    with pytest.raises(data.DatasetError, match="no full batch"):
        next(data.train_batches(small, 1000, seed=0, epoch=0))


def test_train_batches_resume_mid_epoch(small: data.Dataset) -> None:
    full = list(data.train_batches(small, 32, seed=5, epoch=2))
    again = list(data.train_batches(small, 32, seed=5, epoch=2))
    resumed = list(data.train_batches(small, 32, seed=5, epoch=2, start_batch=4))
    assert len(resumed) == len(full) - 4
    for a, b in zip(full, again):
        np.testing.assert_array_equal(a["image"], b["image"])
    for a, b in zip(full[4:], resumed):
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["label"], b["label"])
    other_epoch = next(data.train_batches(small, 32, seed=5, epoch=3))
    assert not np.array_equal(other_epoch["label"], full[0]["label"])


def test_train_batches_without_augment_are_normalised_originals(small: data.Dataset) -> None:
    b = next(data.train_batches(small, 16, seed=1, epoch=0, augment=False))
    idx = data.epoch_permutation(1, 0, small.num_train)[:16]
    expected = data.normalize(small.train_images[idx], small.mean, small.std)
    np.testing.assert_array_equal(b["image"], expected)


def test_eval_batches_cover_split_in_order(small: data.Dataset) -> None:
    batches = list(data.eval_batches(small, 300))
    assert len(batches) == data.num_batches(small, 300, split="test", drop_last=False) == 4
    assert batches[-1]["label"].shape == (100,)
    np.testing.assert_array_equal(np.concatenate([b["label"] for b in batches]), small.test_labels)
    first = data.normalize(small.test_images[:300], small.mean, small.std)
    np.testing.assert_array_equal(batches[0]["image"], first)
    assert len(list(data.eval_batches(small, 100, split="train"))) == 4
    with pytest.raises(data.DatasetError, match="split"):
        next(data.eval_batches(small, 10, split="validation"))


# --------------------------------------------------------------------------- TFDS


def _ensure_importlib_resources() -> None:
    """TFDS's dataset *writer* imports ``importlib_resources`` (not declared by its deps).

    On Python 3.11+ the stdlib ``importlib.resources`` provides the same ``files`` and
    ``abc.Traversable``, so alias it when the backport is absent. Only the fixture
    builder needs this; the loader under test only reads.
    """
    try:
        importlib.import_module("importlib_resources")
    except ImportError:
        importlib.import_module("importlib.resources.abc")
        sys.modules["importlib_resources"] = importlib.resources


def _store_fake(
    tfds,
    data_dir: Path,
    tfds_name: str,
    make_example,
    splits: dict[str, int],
    label_names: list[str] | None = None,
) -> None:
    """Write a tiny *real* TFDS dataset with the registered builder's own features."""
    reference = tfds.builder(tfds_name, data_dir=str(data_dir))
    if label_names is not None:  # CIFAR's builder sets its names at generation time
        reference.info.features["label"].names = label_names
    config = reference.builder_config.name if reference.builder_config else None
    rng = np.random.default_rng(0)
    split_data = {
        split: [(i, make_example(i, split, rng)) for i in range(n)] for split, n in splits.items()
    }
    tfds.dataset_builders.store_as_tfds_dataset(
        name=tfds_name.split("/")[0],
        version=str(reference.version),
        config=config,
        features=reference.info.features,
        split_datasets=split_data,
        data_dir=str(data_dir),
    )


CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tfds = pytest.importorskip(
        "tensorflow_datasets", reason="tensorflow-datasets not installed: TFDS loader untested"
    )
    pytest.importorskip("tensorflow", reason="tensorflow not installed: TFDS loader untested")
    _ensure_importlib_resources()
    root = tmp_path_factory.mktemp("tfds")

    def cifar_example(i: int, split: str, rng: np.random.Generator) -> dict:
        return {
            "id": f"{split}_{i:05d}",
            "image": rng.integers(0, 256, (32, 32, 3), dtype=np.uint8),
            "label": i % 10,
        }

    def imagenet_example(i: int, split: str, rng: np.random.Generator) -> dict:
        # Labels 0..239 so that half of them must be filtered out (>= 120).
        return {"image": rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), "label": (i * 7) % 240}

    _store_fake(tfds, root, "cifar10", cifar_example, {"train": 40, "test": 20}, CIFAR_NAMES)
    _store_fake(tfds, root, "imagenet_resized/16x16", imagenet_example, {"train": 48, "validation": 24})
    return root


def test_tfds_cifar10_loads_through_real_builder(tfds_dir: Path) -> None:
    ds = data.load_dataset("cifar10", data_dir=tfds_dir)
    assert (ds.num_train, ds.num_test, ds.image_shape, ds.num_classes) == (40, 20, (32, 32, 3), 10)
    assert ds.class_names == tuple(CIFAR_NAMES)
    assert sorted(ds.train_labels.tolist()) == sorted([i % 10 for i in range(40)])
    assert ds.train_images.dtype == np.uint8 and ds.train_labels.dtype == np.int32
    np.testing.assert_allclose(ds.mean, 0.5, atol=0.05)  # uniform random pixels


def test_tfds_imagenet16_120_keeps_first_120_classes(tfds_dir: Path) -> None:
    ds = data.load_dataset("imagenet16-120", data_dir=tfds_dir)
    assert ds.num_classes == 120 and len(ds.class_names) == 120
    assert ds.image_shape == (16, 16, 3)
    expected_train = sorted(lab for lab in ((i * 7) % 240 for i in range(48)) if lab < 120)
    assert sorted(ds.train_labels.tolist()) == expected_train
    expected_test = sorted(lab for lab in ((i * 7) % 240 for i in range(24)) if lab < 120)
    assert sorted(ds.test_labels.tolist()) == expected_test


def test_tfds_unprepared_dataset_is_a_clear_error(tfds_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(data.DatasetError, match="not prepared.*never downloads"):
        data.load_dataset("cifar100", data_dir=tmp_path)


# --------------------------------------------------------------------------- real CIFAR-10

CIFAR10_ENV = "FBNAS_CIFAR10_ARCHIVE"


@pytest.fixture(scope="module")
def cifar10() -> data.Dataset:
    path = os.environ.get(CIFAR10_ENV)
    if not path:
        pytest.skip(f"{CIFAR10_ENV} is not set (path of cifar10-jpeg.tar.gz; CI sets it)")
    return data.load_dataset(path)  # decodes once (~15 s), then reads the npz cache


def test_cifar10_archive_counts_and_stats(cifar10: data.Dataset) -> None:
    assert (cifar10.num_train, cifar10.num_test, cifar10.image_shape) == (50000, 10000, (32, 32, 3))
    assert cifar10.class_names == tuple(CIFAR_NAMES)
    assert np.bincount(cifar10.train_labels).tolist() == [5000] * 10
    assert np.bincount(cifar10.test_labels).tolist() == [1000] * 10
    np.testing.assert_allclose(cifar10.mean, [0.4913, 0.4821, 0.4465], atol=0.01)
    np.testing.assert_allclose(cifar10.std, [0.247, 0.243, 0.261], atol=0.02)


def test_cifar10_batches(cifar10: data.Dataset) -> None:
    b = next(data.train_batches(cifar10, 256, seed=0, epoch=0))
    assert b["image"].shape == (256, 32, 32, 3)
    assert abs(float(b["image"].mean())) < 0.3
