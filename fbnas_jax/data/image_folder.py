"""Local image-folder datasets (a directory or a ``.tar``/``.tar.gz``), decoded once into a cache.

Layout: ``[prefix/]train/<class>/<image>`` and ``[prefix/]test/<class>/<image>``. Class
order is the sorted list of train class directory names; within a class, images are
ordered by file name, so the decoded arrays do not depend on archive member order.

Decoding 60k JPEGs takes a while on 2 cores, so the result is stored as an uncompressed
``.npz`` in the cache directory, keyed by the source path and its size and mtime (for a
directory: every file's relative path, size and mtime). Later loads just read the npz.
"""
from __future__ import annotations

import hashlib
import io
import os
import tarfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from fbnas_jax.data.dataset import Dataset, DatasetError, DatasetNotFoundError, channel_stats

__all__ = ["load_image_folder", "default_cache_dir", "cache_path_for", "decode_image"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
SPLITS = ("train", "test")
# Bump when the cache content or layout changes so stale caches are not reused.
_CACHE_FORMAT = 1

# (split, class name, file name, encoded bytes)
_Entry = tuple[str, str, str, bytes]


def default_cache_dir() -> Path:
    """``$FBNAS_CACHE_DIR`` if set, else ``~/.cache/fbnas_jax``."""
    env = os.environ.get("FBNAS_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "fbnas_jax"


def is_archive(path: Path) -> bool:
    return path.name.lower().endswith(ARCHIVE_SUFFIXES)


def _display_name(path: Path) -> str:
    """The file or directory name without an archive suffix, e.g. ``cifar10-jpeg``."""
    name = path.resolve().name
    for suffix in ARCHIVE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def decode_image(data: bytes) -> np.ndarray:
    """Decode encoded image bytes into a ``uint8`` (H, W, 3) RGB array with Pillow.

    Module-level so that tests can monkeypatch it to prove that a cached load decodes
    nothing.
    """
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"), dtype=np.uint8)


def _source_fingerprint(path: Path) -> str:
    """A hash that changes whenever the source data may have changed."""
    h = hashlib.sha1(f"v{_CACHE_FORMAT}|{path.resolve()}".encode())
    if path.is_dir():
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for name in sorted(files):
                st = os.stat(os.path.join(root, name))
                rel = os.path.relpath(os.path.join(root, name), path)
                h.update(f"|{rel}:{st.st_size}:{st.st_mtime_ns}".encode())
    else:
        st = path.stat()
        h.update(f"|{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def cache_path_for(path: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the decoded cache for the dataset at ``path`` lives (it may not exist yet)."""
    path = Path(path).expanduser()
    cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return cache_dir / f"imagefolder-{_display_name(path)}-{_source_fingerprint(path)}.npz"


def _classify_member(rel_parts: tuple[str, ...]) -> tuple[str, str, str] | None:
    """Map a relative path to (split, class, file) or None if it is not a dataset image.

    Only the last three components are used, so an archive may wrap the layout in any
    top-level folder. Hidden files (e.g. macOS ``._x.jpg``) are ignored.
    """
    if len(rel_parts) < 3:
        return None
    split, cls, fname = rel_parts[-3:]
    if split not in SPLITS or fname.startswith(".") or cls.startswith("."):
        return None
    if not fname.lower().endswith(IMAGE_EXTENSIONS):
        return None
    return split, cls, fname


def _iter_archive(path: Path, progress) -> Iterator[_Entry]:
    """Stream image members of a tar archive without extracting it to disk."""
    with open(path, "rb") as raw, tarfile.open(fileobj=raw, mode="r|*") as tar:
        done = 0
        for member in tar:
            if member.isfile():
                key = _classify_member(Path(member.name).parts)
                if key is not None:
                    fobj = tar.extractfile(member)
                    if fobj is not None:
                        yield (*key, fobj.read())
            pos = raw.tell()
            progress.update(pos - done)
            done = pos


def _iter_directory(path: Path, progress) -> Iterator[_Entry]:
    """Read image files below a directory."""
    for split in SPLITS:
        split_dir = path / split
        if not split_dir.is_dir():
            continue
        for cls_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
            for f in sorted(cls_dir.iterdir()):
                key = _classify_member((split, cls_dir.name, f.name))
                if key is not None and f.is_file():
                    data = f.read_bytes()
                    progress.update(len(data))
                    yield (*key, data)


def _decode_all(path: Path) -> dict[str, list[tuple[str, str, np.ndarray]]]:
    """Decode every image, with a progress bar over the bytes read."""
    from tqdm.auto import tqdm

    if path.is_dir():
        total = None  # unknown without a second directory walk; the bar still counts
        entries = _iter_directory
    else:
        total = path.stat().st_size
        entries = _iter_archive
    decoded: dict[str, list[tuple[str, str, np.ndarray]]] = {s: [] for s in SPLITS}
    with tqdm(
        total=total, unit="B", unit_scale=True, desc=f"decoding {path.name}", leave=False
    ) as bar:
        try:
            for split, cls, fname, data in entries(path, bar):
                try:
                    decoded[split].append((cls, fname, decode_image(data)))
                except Exception as exc:  # Pillow raises several unrelated types
                    raise DatasetError(f"{path}: cannot decode {split}/{cls}/{fname}: {exc}") from exc
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise DatasetError(f"{path}: cannot read dataset files: {exc}") from exc
    return decoded


def _stack_split(
    path: Path, split: str, items: list[tuple[str, str, np.ndarray]], class_index: dict[str, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Sort a split's images by (class, file name) and stack them into arrays."""
    unknown = sorted({cls for cls, _, _ in items} - class_index.keys())
    if unknown:
        raise DatasetError(f"{path}: {split} has classes not present in train: {unknown}")
    items = sorted(items, key=lambda it: (class_index[it[0]], it[1]))
    shapes = {img.shape for _, _, img in items}
    if len(shapes) != 1:
        raise DatasetError(
            f"{path}: all images must have the same size, found {sorted(shapes)} in {split}"
        )
    images = np.stack([img for _, _, img in items])
    labels = np.asarray([class_index[cls] for cls, _, _ in items], dtype=np.int32)
    return images, labels


def _build(path: Path) -> dict[str, np.ndarray]:
    """Decode the dataset at ``path`` into the arrays stored in the cache."""
    decoded = _decode_all(path)
    for split in SPLITS:
        if not decoded[split]:
            raise DatasetError(
                f"{path}: no images found under '{split}/<class>/' "
                f"(expected layout train/<class>/*.jpg and test/<class>/*.jpg)"
            )
    class_names = sorted({cls for cls, _, _ in decoded["train"]})
    class_index = {c: i for i, c in enumerate(class_names)}
    train_x, train_y = _stack_split(path, "train", decoded["train"], class_index)
    test_x, test_y = _stack_split(path, "test", decoded["test"], class_index)
    if train_x.shape[1:] != test_x.shape[1:]:
        raise DatasetError(f"{path}: train images {train_x.shape[1:]} vs test {test_x.shape[1:]}")
    mean, std = channel_stats(train_x)
    return {
        "train_images": train_x,
        "train_labels": train_y,
        "test_images": test_x,
        "test_labels": test_y,
        "class_names": np.asarray(class_names),
        "mean": mean,
        "std": std,
    }


def _write_atomic(target: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write the npz under a temporary name, then rename: a killed run leaves no half cache."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)  # uncompressed: loading is then just a read
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _read_cache(cache: Path) -> dict[str, np.ndarray] | None:
    """Read a cache file, or return None (with a warning) if it is unreadable."""
    try:
        with np.load(cache, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as exc:  # a truncated/corrupt file: rebuild rather than fail
        warnings.warn(f"ignoring unreadable dataset cache {cache}: {exc}", stacklevel=3)
        return None


def load_image_folder(
    path: str | os.PathLike, cache_dir: str | os.PathLike | None = None
) -> Dataset:
    """Load an image-folder dataset from a directory or tar archive, using the cache.

    Raises:
      DatasetNotFoundError: ``path`` does not exist.
      DatasetError: the layout is wrong, images differ in size, or decoding fails.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise DatasetNotFoundError(
            f"dataset path not found: {path} (expected a directory or a .tar.gz archive "
            f"with train/<class>/*.jpg and test/<class>/*.jpg)"
        )
    if not path.is_dir() and not is_archive(path):
        raise DatasetError(
            f"{path} is neither a directory nor an archive ({', '.join(ARCHIVE_SUFFIXES)})"
        )
    cache = cache_path_for(path, cache_dir)
    arrays = _read_cache(cache) if cache.exists() else None
    if arrays is None:
        arrays = _build(path)
        _write_atomic(cache, arrays)
    class_names = tuple(str(c) for c in arrays["class_names"])
    return Dataset(
        train_images=arrays["train_images"],
        train_labels=arrays["train_labels"],
        test_images=arrays["test_images"],
        test_labels=arrays["test_labels"],
        num_classes=len(class_names),
        class_names=class_names,
        mean=arrays["mean"],
        std=arrays["std"],
        name=_display_name(path),
    )
