"""The training program's vocabulary: each choice flag's values, the error of
a bad flag, and a field's command-line spelling.

:mod:`zosam_jax.train.config` (the configuration) and
:mod:`zosam_jax.train.validation` (its checks) both build on this module;
neither imports the other's names at run time.
"""

from __future__ import annotations

OPTIMIZERS: tuple[str, ...] = ("sgd", "sam", "zosam", "msam", "looksam")
#: The optimizers that take ``--rho`` (all but SGD).
SAM_LIKE: tuple[str, ...] = OPTIMIZERS[1:]
ESTIMATORS: tuple[str, ...] = ("central", "forward", "jvp", "random")
ZO_DISTRIBUTIONS: tuple[str, ...] = ("gaussian", "rademacher", "sphere")
SPARSE_METHODS: tuple[str, ...] = ("dense", "static", "set", "rigl", "gmp")
SPARSE_DISTRIBUTIONS: tuple[str, ...] = ("erk", "uniform")
SPARSE_INITS: tuple[str, ...] = ("random", "snip", "magnitude")
ZO_PRIORS: tuple[str, ...] = ("none", "gradient", "momentum")
SCHEDULES: tuple[str, ...] = ("cosine", "constant")
CIFAR10_TEST_SETS: tuple[str, ...] = ("lossless_1k", "jpeg_10k")
DATASETS: tuple[str, ...] = ("digits", "mnist1d", "fashion_mnist", "cifar10",
                             "cifar100")
MODELS: tuple[str, ...] = (
    "mlp", "cnn", "resnet20", "resnet32", "resnet56",
    "vgg11", "vgg16", "vgg19", "vit",
)


class ConfigError(ValueError):
  """An invalid flag value or an impossible combination of flags."""


def flag(name: str) -> str:
  """Returns the command-line spelling of a config field, e.g. ``--num-dirs``."""
  return "--" + name.replace("_", "-")
