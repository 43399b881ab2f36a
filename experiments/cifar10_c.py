"""CIFAR-10-C corruptions with the published severity parameters, for 32x32 RGB.

Our NumPy/SciPy/PIL implementation of the corruptions of Hendrycks & Dietterich,
"Benchmarking Neural Network Robustness to Common Corruptions and
Perturbations" (ICLR 2019), with the constants of their CIFAR-10-C generator
(``make_cifar_c.py`` in github.com/hendrycks/robustness) for the eight that need
nothing beyond NumPy, SciPy and PIL. Images are ``uint8`` ``(N, 32, 32, 3)``;
every function works in [0, 1] and returns ``uint8`` (truncated, as their
``np.uint8(...)``):

================  ==============================================================
corruption        severity 1 ... 5 (the published constants)
================  ==============================================================
gaussian_noise    x + N(0, c²), c = 0.04, 0.06, 0.08, 0.09, 0.10
shot_noise        Poisson(x·c)/c, c = 500, 250, 100, 75, 50
impulse_noise     salt-and-pepper on a fraction c = 0.01, 0.02, 0.03, 0.05, 0.07
                  of the values (half salt, half pepper)
defocus_blur      disk of radius r, anti-aliased by a 3x3 Gaussian of σ a:
                  (r, a) = (0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)
contrast          (x − mean)·c + mean per image and channel,
                  c = 0.75, 0.5, 0.4, 0.3, 0.15
brightness        V (HSV) + c, c = 0.05, 0.1, 0.15, 0.2, 0.3
pixelate          box-downsample to ⌊32c⌋ px and back (PIL BOX),
                  c = 0.95, 0.9, 0.85, 0.75, 0.65
jpeg_compression  JPEG at quality c = 80, 65, 58, 50, 40 (PIL)
================  ==============================================================

Differences from the original: the random numbers (NumPy's ``default_rng``
seeded per corruption, severity and ``seed``; the original uses the global
state), and the anti-aliasing Gaussian and border mode (SciPy's ``mirror``
equals OpenCV's default ``BORDER_REFLECT_101``) are written out here instead of
calling OpenCV.
"""

from __future__ import annotations

import io

import numpy as np
from matplotlib import colors
from scipy import ndimage

SEVERITIES = (1, 2, 3, 4, 5)
PARAMS = {
    "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),
    "shot_noise": (500, 250, 100, 75, 50),
    "impulse_noise": (0.01, 0.02, 0.03, 0.05, 0.07),
    "defocus_blur": ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)),
    "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),
    "brightness": (0.05, 0.1, 0.15, 0.2, 0.3),
    "pixelate": (0.95, 0.9, 0.85, 0.75, 0.65),
    "jpeg_compression": (80, 65, 58, 50, 40),
}
CORRUPTIONS = tuple(PARAMS)


def disk_kernel(radius: float, alias_sigma: float) -> np.ndarray:
  """The anti-aliased disk of CIFAR-10-C's defocus blur, ``(17, 17)``, sum 1."""
  grid = np.arange(-8, 9)
  xx, yy = np.meshgrid(grid, grid)
  disk = ((xx ** 2 + yy ** 2) <= radius ** 2).astype(np.float64)
  disk /= disk.sum()
  # OpenCV's 3x3 Gaussian of sigma alias_sigma, then its border handling.
  g = np.exp(-np.arange(-1, 2) ** 2 / (2 * alias_sigma ** 2))
  g /= g.sum()
  return ndimage.convolve(disk, np.outer(g, g), mode="mirror")


def _noise(x, name, c, rng):
  if name == "gaussian_noise":
    return x + rng.normal(scale=c, size=x.shape)
  if name == "shot_noise":
    return rng.poisson(x * c) / c
  # impulse: skimage.util.random_noise(mode="s&p", amount=c, salt_vs_pepper=0.5)
  out = x.copy()
  hit = rng.random(x.shape) < c
  salt = rng.random(x.shape) < 0.5
  out[hit & salt], out[hit & ~salt] = 1.0, 0.0
  return out


def _defocus(x, c):
  kernel = disk_kernel(*c)
  return np.stack([ndimage.convolve(x[..., d], kernel, mode="mirror")
                   for d in range(x.shape[-1])], axis=-1)


def _contrast(x, c):
  means = x.mean(axis=(0, 1), keepdims=True)
  return (x - means) * c + means


def _brightness(x, c):
  hsv = colors.rgb_to_hsv(np.clip(x, 0, 1))
  hsv[..., 2] = np.clip(hsv[..., 2] + c, 0, 1)
  return colors.hsv_to_rgb(hsv)


def _pil_roundtrip(image_uint8, name, c):
  from PIL import Image  # pylint: disable=import-outside-toplevel
  img = Image.fromarray(image_uint8)
  if name == "pixelate":
    size = img.size[0]
    small = img.resize((int(size * c), int(size * c)), Image.BOX)
    return np.asarray(small.resize((size, size), Image.BOX))
  buffer = io.BytesIO()
  img.save(buffer, "JPEG", quality=c)
  return np.asarray(Image.open(buffer).convert("RGB"))


def corrupt_image(image: np.ndarray, name: str, severity: int,
                  rng: np.random.Generator) -> np.ndarray:
  """One ``(H, W, 3)`` ``uint8`` image corrupted; returns ``uint8``."""
  c = PARAMS[name][severity - 1]
  if name in ("pixelate", "jpeg_compression"):
    return _pil_roundtrip(image, name, c)
  x = image.astype(np.float64) / 255.0
  if name.endswith("_noise"):
    x = _noise(x, name, c, rng)
  elif name == "defocus_blur":
    x = _defocus(x, c)
  elif name == "contrast":
    x = _contrast(x, c)
  else:
    x = _brightness(x, c)
  return (np.clip(x, 0, 1) * 255).astype(np.uint8)


def corrupt(images: np.ndarray, name: str, severity: int, seed: int = 0) -> np.ndarray:
  """CIFAR-10-C corruption ``name`` at ``severity`` of ``(N, H, W, 3)`` uint8 images.

  Args:
    images: ``uint8`` RGB images.
    name: one of :data:`CORRUPTIONS`.
    severity: 1 to 5.
    seed: the noise is a function of ``(name, severity, seed)``.

  Returns:
    ``uint8`` images of the same shape.

  Raises:
    ValueError: for an unknown name or severity, or images that are not
      ``uint8`` RGB.
  """
  if name not in PARAMS:
    raise ValueError(f"unknown corruption {name!r}; choose one of {CORRUPTIONS}")
  if severity not in SEVERITIES:
    raise ValueError(f"severity must be 1..5, got {severity!r}")
  if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
    raise ValueError(f"images must be uint8 (N, H, W, 3), got {images.dtype} "
                     f"{images.shape}")
  rng = np.random.default_rng([CORRUPTIONS.index(name), severity, seed])
  return np.stack([corrupt_image(im, name, severity, rng) for im in images])
