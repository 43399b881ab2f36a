"""Flax linen models for the training program and the benchmarks.

All models take an NHWC batch and a ``train`` flag and return logits:
``model.apply(variables, x, train=False)``. Models with BatchNorm keep their
running statistics in the ``batch_stats`` collection.

* ``mlp``: a small multilayer perceptron.
* ``cnn`` (the default): a small convolutional net (two 3x3 convolutions with
  max-pooling, one hidden dense layer), LeNet-like, for 8x8 digits and 28x28
  Fashion-MNIST; where a backward pass costs more than a forward pass, as in
  the models ZO-SAM is meant for.
* ``resnet20/32/56``: the CIFAR ResNet of He et al. (2016), section 4.2:
  a 3x3 stem, three stages of n basic blocks with 16/32/64 channels,
  BatchNorm and ReLU, global average pooling and one dense layer; depth
  6n + 2. ``resnet32`` is the network of the ZO-SAM paper's CIFAR tables.
* ``vgg11/16/19``: VGG with BatchNorm, global average pooling and a single
  dense classifier (the variant used by the sparse-training literature,
  e.g. GraSP and RigL); a max-pool is skipped once the feature map is 1x1,
  so the networks also run on 8x8 inputs.
* ``vit``: a small Vision Transformer (patch embedding, learned position
  embedding, pre-LayerNorm transformer blocks, mean pooling).

References:
  He, Zhang, Ren, Sun, `Deep Residual Learning for Image Recognition
  <https://arxiv.org/abs/1512.03385>`_, CVPR 2016.

  Simonyan, Zisserman, `Very Deep Convolutional Networks for Large-Scale
  Image Recognition <https://arxiv.org/abs/1409.1556>`_, ICLR 2015.

  Dosovitskiy et al., `An Image is Worth 16x16 Words
  <https://arxiv.org/abs/2010.11929>`_, ICLR 2021.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

_CONV_INIT = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
_BN: dict[str, Any] = dict(momentum=0.9, epsilon=1e-5)


class MLP(nn.Module):
  """A ReLU multilayer perceptron on the flattened input."""

  num_classes: int
  features: Sequence[int] = (256, 256)

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    del train  # No BatchNorm or dropout.
    x = x.reshape((x.shape[0], -1))
    for width in self.features:
      x = nn.relu(nn.Dense(width)(x))
    return nn.Dense(self.num_classes)(x)


class SmallCNN(nn.Module):
  """Two 3x3 ReLU convolutions, each followed by 2x2 max-pooling, then MLP."""

  num_classes: int
  channels: Sequence[int] = (16, 32)
  hidden: int = 128

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    del train  # No BatchNorm or dropout.
    for c in self.channels:
      x = nn.relu(nn.Conv(c, (3, 3), kernel_init=_CONV_INIT)(x))
      x = nn.max_pool(x, (2, 2), (2, 2), padding="SAME")
    x = nn.relu(nn.Dense(self.hidden)(x.reshape((x.shape[0], -1))))
    return nn.Dense(self.num_classes)(x)


class BasicBlock(nn.Module):
  """Two 3x3 convolutions with a residual connection (He et al. 2016)."""

  features: int
  strides: int = 1
  shortcut: str = "A"

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
    norm = lambda: nn.BatchNorm(use_running_average=not train, **_BN)
    y = nn.Conv(self.features, (3, 3), self.strides, use_bias=False,
                kernel_init=_CONV_INIT)(x)
    y = nn.relu(norm()(y))
    y = nn.Conv(self.features, (3, 3), use_bias=False, kernel_init=_CONV_INIT)(y)
    y = norm()(y)
    if self.strides != 1 or x.shape[-1] != self.features:
      if self.shortcut == "A":
        # Option A of the paper: subsample and zero-pad the channels, so the
        # shortcut has no parameters (this gives ResNet-32 its 0.46M weights).
        x = x[:, :: self.strides, :: self.strides, :]
        extra = self.features - x.shape[-1]
        x = jnp.pad(x, ((0, 0), (0, 0), (0, 0), (extra // 2, extra - extra // 2)))
      else:
        x = nn.Conv(self.features, (1, 1), self.strides, use_bias=False,
                    kernel_init=_CONV_INIT)(x)
        x = norm()(x)
    return nn.relu(x + y)


class CifarResNet(nn.Module):
  """The CIFAR ResNet of He et al. (2016): depth 6n + 2, widths 16/32/64."""

  num_classes: int
  blocks_per_stage: int = 5
  widths: Sequence[int] = (16, 32, 64)
  shortcut: str = "A"

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    x = nn.Conv(self.widths[0], (3, 3), use_bias=False, kernel_init=_CONV_INIT)(x)
    x = nn.relu(nn.BatchNorm(use_running_average=not train, **_BN)(x))
    for stage, width in enumerate(self.widths):
      for block in range(self.blocks_per_stage):
        strides = 2 if stage > 0 and block == 0 else 1
        x = BasicBlock(width, strides, self.shortcut)(x, train)
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes)(x)


VGG_LAYERS: dict[str, tuple[Any, ...]] = {
    "vgg11": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
              512, 512, 512, "M", 512, 512, 512, "M"),
    "vgg19": (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
              512, 512, 512, 512, "M", 512, 512, 512, 512, "M"),
}


class VGG(nn.Module):
  """VGG with BatchNorm, global average pooling and one dense layer."""

  num_classes: int
  layers: Sequence[Any] = VGG_LAYERS["vgg11"]
  width_multiplier: float = 1.0

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    for layer in self.layers:
      if layer == "M":
        if x.shape[1] > 1 and x.shape[2] > 1:
          x = nn.max_pool(x, (2, 2), strides=(2, 2))
        continue
      width = max(1, int(layer * self.width_multiplier))
      x = nn.Conv(width, (3, 3), use_bias=False, kernel_init=_CONV_INIT)(x)
      x = nn.relu(nn.BatchNorm(use_running_average=not train, **_BN)(x))
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes)(x)


class TransformerBlock(nn.Module):
  """A pre-LayerNorm transformer encoder block."""

  num_heads: int
  mlp_dim: int

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    y = nn.LayerNorm()(x)
    x = x + nn.MultiHeadDotProductAttention(num_heads=self.num_heads)(y, y)
    y = nn.LayerNorm()(x)
    y = nn.Dense(x.shape[-1])(nn.gelu(nn.Dense(self.mlp_dim)(y)))
    return x + y


def _default_patch(size: int) -> int:
  """The largest of 4, 2, 1 that divides ``size`` into at least 2 patches."""
  for patch in (4, 2):
    if size % patch == 0 and size // patch >= 2:
      return patch
  return 1


class ViT(nn.Module):
  """A small Vision Transformer with mean pooling over the patch tokens.

  ``patch_size`` defaults to 4 for 32x32 and 16x16 inputs and 2 for 8x8
  inputs (chosen per spatial axis, so 1-D signals of shape ``(40, 1)`` work).
  """

  num_classes: int
  patch_size: int | tuple[int, int] | None = None
  hidden_dim: int = 64
  depth: int = 4
  num_heads: int = 4
  mlp_dim: int = 128

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    del train  # No dropout: the model is deterministic.
    patch: tuple[int, ...]
    if self.patch_size is None:
      patch = (_default_patch(x.shape[1]), _default_patch(x.shape[2]))
    elif isinstance(self.patch_size, int):
      patch = (self.patch_size, self.patch_size)
    else:
      patch = tuple(self.patch_size)
    x = nn.Conv(self.hidden_dim, patch, strides=patch, padding="VALID")(x)
    x = x.reshape((x.shape[0], -1, self.hidden_dim))
    pos = self.param("pos_embedding", nn.initializers.normal(0.02),
                     (1, x.shape[1], self.hidden_dim))
    x = x + jnp.broadcast_to(pos, x.shape)
    for _ in range(self.depth):
      x = TransformerBlock(self.num_heads, self.mlp_dim)(x)
    x = jnp.mean(nn.LayerNorm()(x), axis=1)
    return nn.Dense(self.num_classes)(x)


def get_model(name: str, num_classes: int, **kwargs: Any) -> nn.Module:
  """Builds a model by name.

  Args:
    name: one of ``mlp``, ``cnn``, ``resnet20``, ``resnet32``, ``resnet56`` (any
      ``resnet{6n+2}``, e.g. ``resnet8`` for quick tests), ``vgg11``,
      ``vgg16``, ``vgg19``, ``vit``.
    num_classes: number of output logits.
    **kwargs: extra fields of the model class, e.g. ``features=(128,)`` for
      the MLP, ``shortcut="B"`` (1x1 convolution shortcuts) for the ResNets,
      ``width_multiplier=0.25`` for VGG, ``depth=6, hidden_dim=192`` for the
      ViT.

  Returns:
    An unbound ``flax.linen.Module``; call it as
    ``model.apply(variables, x, train=...)`` with NHWC inputs.

  Raises:
    ValueError: if ``name`` is unknown.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> model = get_model("resnet32", num_classes=10)
    >>> variables = jax.eval_shape(
    ...     lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3))))
    >>> sum(p.size for p in jax.tree.leaves(variables["params"]))
    464154
  """
  if name == "mlp":
    return MLP(num_classes, **kwargs)
  if name == "cnn":
    return SmallCNN(num_classes, **kwargs)
  if name.startswith("resnet") and name[6:].isdigit():
    depth = int(name[6:])
    if depth < 8 or (depth - 2) % 6:
      raise ValueError(f"unknown model {name!r}: CIFAR ResNet depth must be 6n+2")
    return CifarResNet(num_classes, blocks_per_stage=(depth - 2) // 6, **kwargs)
  if name in VGG_LAYERS:
    return VGG(num_classes, layers=VGG_LAYERS[name], **kwargs)
  if name == "vit":
    return ViT(num_classes, **kwargs)
  raise ValueError(
      f"unknown model {name!r}; choose mlp, cnn, resnet20, resnet32, resnet56, "
      "vgg11, vgg16, vgg19 or vit")
