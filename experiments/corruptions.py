"""CIFAR-10-C-style corruptions for small grayscale images in [0, 1].

After Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common
Corruptions and Perturbations" (ICLR 2019), re-implemented with NumPy/SciPy
(and PIL for JPEG) and adapted to 8x8 images. The CIFAR-10-C constants are
kept where they are intensity-based (noise, contrast, brightness); the
spatial ones (blur radii, JPEG quality) are rescaled because an 8x8 digit
is a 4x downsampled image whose strokes are 1-2 pixels wide:

================  =============================================  ========================
corruption        severity 1 ... 5                               CIFAR-10-C
================  =============================================  ========================
gaussian_noise    σ = 0.08, 0.12, 0.18, 0.26, 0.38               same
shot_noise        Poisson, photons λ = 60, 25, 12, 5, 3          same
impulse_noise     salt-and-pepper amount 0.03, 0.06, 0.09,       same
                  0.17, 0.27
gaussian_blur     σ = 0.4, 0.5, 0.6, 0.8, 1.0 px                 0.4 .. 1.0 px on 32x32
defocus_blur      disk radius 0.6, 0.8, 1.0, 1.25, 1.5 px,      0.3 .. 1.5 px, alias
                  alias blur σ = 0.25                            blur 0.1 .. 0.5
contrast          (x − mean)·c + mean, c = 0.75, 0.5, 0.4,       same
                  0.3, 0.15
brightness        x + c, clipped, c = 0.1, 0.2, 0.3, 0.4, 0.5    +0.05 .. 0.3 on V (HSV)
jpeg              PIL quality 50, 30, 20, 10, 5 on the 8x8       quality 80 .. 40
                  image itself (one 8x8 JPEG block)
================  =============================================  ========================

Every corruption is deterministic given ``seed``.
"""

from __future__ import annotations

import io

import numpy as np
from scipy import ndimage

SEVERITIES = (1, 2, 3, 4, 5)

PARAMS = {
    "gaussian_noise": (0.08, 0.12, 0.18, 0.26, 0.38),
    "shot_noise": (60, 25, 12, 5, 3),
    "impulse_noise": (0.03, 0.06, 0.09, 0.17, 0.27),
    "gaussian_blur": (0.4, 0.5, 0.6, 0.8, 1.0),
    "defocus_blur": (0.6, 0.8, 1.0, 1.25, 1.5),
    "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),
    "brightness": (0.1, 0.2, 0.3, 0.4, 0.5),
    "jpeg": (50, 30, 20, 10, 5),
}


def _have_pil() -> bool:
  try:
    import PIL  # noqa: F401
  except ImportError:
    return False
  return True


#: The corruptions available here (JPEG only with PIL installed).
CORRUPTIONS = tuple(c for c in PARAMS if c != "jpeg" or _have_pil())


def _disk(radius: float, alias_sigma: float) -> np.ndarray:
  """A normalised disk kernel, supersampled 8x so sub-pixel radii are smooth."""
  r = int(np.ceil(radius)) + 1
  ss = 8
  grid = (np.arange(-r * ss, (r + 1) * ss) + 0.5) / ss - 0.5
  xx, yy = np.meshgrid(grid, grid)
  inside = (xx ** 2 + yy ** 2 <= radius ** 2).astype(np.float64)
  n = 2 * r + 1
  k = inside[: n * ss, : n * ss].reshape(n, ss, n, ss).mean(axis=(1, 3))
  k = ndimage.gaussian_filter(k, alias_sigma)
  return k / k.sum()


def _per_image(fn, x: np.ndarray) -> np.ndarray:
  return np.stack([fn(img) for img in x])


def corrupt(x: np.ndarray, name: str, severity: int, seed: int = 0) -> np.ndarray:
  """Applies a corruption to a batch of images.

  Args:
    x: ``(N, H, W)`` or ``(N, H, W, C)`` float images in [0, 1] (C = 1 for
      digits, 3 for CIFAR; colour channels are corrupted alike).
    name: one of :data:`CORRUPTIONS`.
    severity: 1 (mild) to 5 (strong).
    seed: seed of the random corruptions (noise).

  Returns:
    The corrupted images, same shape, float32 in [0, 1].
  """
  if name not in PARAMS:
    raise ValueError(f"unknown corruption {name!r}; one of {', '.join(PARAMS)}")
  if severity not in SEVERITIES:
    raise ValueError(f"severity must be 1..5, got {severity!r}")
  c = PARAMS[name][severity - 1]
  shape = x.shape
  x = np.asarray(x, np.float64)
  x = x[..., None] if x.ndim == 3 else x  # (N, H, W, C)
  rng = np.random.default_rng([seed, severity, list(PARAMS).index(name)])
  per_channel = lambda fn: _per_image(
      lambda im: np.stack([fn(im[..., ch]) for ch in range(im.shape[-1])], -1), x)
  if name == "gaussian_noise":
    y = x + rng.normal(size=x.shape) * c
  elif name == "shot_noise":
    y = rng.poisson(x * c) / c
  elif name == "impulse_noise":
    u = rng.random(x.shape)
    y = np.where(u < c / 2, 0.0, np.where(u < c, 1.0, x))
  elif name == "gaussian_blur":
    y = per_channel(lambda im: ndimage.gaussian_filter(im, c, mode="nearest"))
  elif name == "defocus_blur":
    k = _disk(c, 0.25)
    y = per_channel(lambda im: ndimage.convolve(im, k, mode="nearest"))
  elif name == "contrast":
    means = x.mean(axis=(1, 2, 3), keepdims=True)
    y = (x - means) * c + means
  elif name == "brightness":
    y = x + c
  else:  # jpeg
    from PIL import Image

    def jpeg(im):
      pixels = np.uint8(np.round(np.clip(im, 0, 1) * 255))
      img = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
      buf = io.BytesIO()
      img.save(buf, "JPEG", quality=int(c))
      out = np.asarray(Image.open(io.BytesIO(buf.getvalue())), np.float64) / 255.0
      return out.reshape(im.shape)

    y = _per_image(jpeg, x)
  return np.clip(y, 0.0, 1.0).astype(np.float32).reshape(shape)
