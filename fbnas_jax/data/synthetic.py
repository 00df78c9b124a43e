"""The embedded ``synthetic`` dataset: needs no download, generated in well under a second.

Each class is an orientation of a sinusoidal grating (10 orientations, 18 degrees apart)
whose first colour is pulled towards a class colour (a weak cue: half of it is random).
Everything else is nuisance drawn per image: orientation jitter, spatial frequency, phase,
the second colour, contrast, a colour gradient and pixel noise. The colour cue is what a
BN-only network with frozen random convolutions picks up first (the demo's, at full strength
below, within a few hundred steps); the orientation, which needs oriented filters, separates
stronger architectures. Jitter of +-8 degrees and the noisy colour keep the task from being
trivial.

``colour_cue`` sets how much of the first colour is the class colour (default 0.5) and
``second_colour_spread`` the range of the random second colour around grey (default 1: any
colour). The defaults make a hard task: a nearest-class-mean classifier on the mean colour
alone gets 24 % (45 % at cue 1; 78 % at cue 1 with spread 0.5), and in 156 steps on 16x16
images a C=8 supernet trained with all weights reached ~20 %, BN-only ~15 %. ``fbnas demo``
uses the easier setting that a BN-only network learns within its budget (``DEMO_DATA`` in
``fbnas_jax/commands/demo.py``).
"""
from __future__ import annotations

import functools

import numpy as np

from fbnas_jax.data.dataset import Dataset, channel_stats

__all__ = ["make_synthetic", "SYNTHETIC_CLASS_NAMES"]

NUM_CLASSES = 10
_ANGLE_STEP_DEG = 180.0 / NUM_CLASSES
_JITTER_DEG = 8.0
# One colour per class, evenly spaced around the hue circle (RGB in [0, 1]).
_CLASS_COLOURS = np.stack([0.5 + 0.5 * np.cos(2 * np.pi * (np.arange(NUM_CLASSES) / NUM_CLASSES + o))
                           for o in (0.0, 1 / 3, 2 / 3)], axis=1).astype(np.float32)

SYNTHETIC_CLASS_NAMES: tuple[str, ...] = tuple(
    f"grating_{int(round(k * _ANGLE_STEP_DEG)):03d}deg" for k in range(NUM_CLASSES)
)


def _balanced_labels(n: int, rng: np.random.Generator) -> np.ndarray:
    """Labels with equal class counts (up to the remainder), in random order."""
    return rng.permutation(np.arange(n) % NUM_CLASSES).astype(np.int32)


def _render(labels: np.ndarray, size: int, rng: np.random.Generator, colour_cue: float = 0.5,
            second_colour_spread: float = 1.0) -> np.ndarray:
    """Render one uint8 image per label, fully vectorised over the batch."""
    n = labels.shape[0]
    coords = (np.arange(size, dtype=np.float32) - (size - 1) / 2) / size  # in [-0.5, 0.5]
    yy, xx = np.meshgrid(coords, coords, indexing="ij")  # (size, size)

    angle_deg = labels * _ANGLE_STEP_DEG + rng.uniform(-_JITTER_DEG, _JITTER_DEG, n)
    theta = np.deg2rad(angle_deg).astype(np.float32)[:, None, None]
    freq = rng.uniform(2.5, 6.0, n).astype(np.float32)[:, None, None]  # cycles per image
    phase = rng.uniform(0, 2 * np.pi, n).astype(np.float32)[:, None, None]
    proj = xx[None] * np.cos(theta) + yy[None] * np.sin(theta)
    wave = np.cos(2 * np.pi * freq * proj + phase)  # (n, size, size) in [-1, 1]

    contrast = rng.uniform(0.35, 1.0, n).astype(np.float32)[:, None, None, None]
    cue = np.float32(colour_cue)
    colour_a = ((1 - cue) * rng.uniform(0, 1, (n, 1, 1, 3)).astype(np.float32)
                + cue * _CLASS_COLOURS[labels][:, None, None, :])
    colour_b = rng.uniform(0, 1, (n, 1, 1, 3)).astype(np.float32)
    if second_colour_spread != 1.0:  # narrowed around grey (the default stays bit-identical)
        colour_b = np.float32(0.5) + np.float32(second_colour_spread) * (colour_b - np.float32(0.5))
    mix = 0.5 + 0.5 * contrast * wave[..., None]
    img = colour_a * mix + colour_b * (1 - mix)

    # A random linear brightness gradient: a low-frequency nuisance unrelated to the class.
    grad_dir = rng.uniform(0, 2 * np.pi, n).astype(np.float32)[:, None, None]
    grad = (xx[None] * np.cos(grad_dir) + yy[None] * np.sin(grad_dir))[..., None]
    img += rng.uniform(0, 0.4, n).astype(np.float32)[:, None, None, None] * grad
    noise = rng.standard_normal(img.shape, dtype=np.float32)
    img += np.float32(0.12) * noise
    img *= np.float32(255.0)
    img += np.float32(0.5)
    return np.clip(img, 0, 255, out=img).astype(np.uint8)


@functools.lru_cache(maxsize=4)
def make_synthetic(
    num_train: int = 5000, num_test: int = 1000, image_size: int = 32, seed: int = 0, colour_cue: float = 0.5,
    second_colour_spread: float = 1.0,
) -> Dataset:
    """Generate the embedded dataset deterministically from ``seed``.

    Train and test use independent random streams derived from ``seed``, so changing
    ``num_train`` does not change the test set. Results are memoised (demo, tests and
    subsets reload it often), so the arrays are made read-only to keep the shared copy
    intact. ``colour_cue`` in [0, 1]: the class colour's share of each image's first colour;
    ``second_colour_spread`` in [0, 1]: the range of the random second colour around grey.
    """
    for name, value in (("colour_cue", colour_cue), ("second_colour_spread", second_colour_spread)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {value}")
    train_rng = np.random.default_rng([seed, 1])
    test_rng = np.random.default_rng([seed, 2])
    train_labels = _balanced_labels(num_train, train_rng)
    test_labels = _balanced_labels(num_test, test_rng)
    train_images = _render(train_labels, image_size, train_rng, colour_cue, second_colour_spread)
    test_images = _render(test_labels, image_size, test_rng, colour_cue, second_colour_spread)
    mean, std = channel_stats(train_images)
    for arr in (train_images, train_labels, test_images, test_labels):
        arr.flags.writeable = False
    return Dataset(
        train_images=train_images,
        train_labels=train_labels,
        test_images=test_images,
        test_labels=test_labels,
        num_classes=NUM_CLASSES,
        class_names=SYNTHETIC_CLASS_NAMES,
        mean=mean,
        std=std,
        name="synthetic",
    )
