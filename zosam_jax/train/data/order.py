"""The data order on the host: which examples each step visits.

The order in which training examples are visited is a pure function of
``(seed, epoch)`` (:func:`epoch_permutation`); with ``--repeat-batches`` K
each minibatch serves K consecutive steps. A run resumed from a checkpoint at
step ``k`` therefore sees exactly the minibatches the uninterrupted run saw,
with nothing to store but the step. The examples are gathered, augmented and
normalised on the accelerator, inside the jitted step
(:func:`zosam_jax.train.steps.prepare_batch`).
"""

from __future__ import annotations

import numpy as np

#: Salt that separates the data-order stream from the other uses of ``seed``.
_ORDER_SALT = 0x5EED


def epoch_permutation(seed: int, epoch: int, num_examples: int) -> np.ndarray:
  """The order in which an epoch visits the training set.

  Args:
    seed: the run's seed.
    epoch: zero-based epoch number.
    num_examples: size of the training set.

  Returns:
    An ``int32`` permutation of ``range(num_examples)``; the same for the same
    arguments on every machine (NumPy's PCG64 stream).

  Examples:
    >>> epoch_permutation(0, 3, 5).tolist() == epoch_permutation(0, 3, 5).tolist()
    True
  """
  rng = np.random.default_rng([_ORDER_SALT, seed, epoch])
  return rng.permutation(num_examples).astype(np.int32)


class BatchOrder:
  """Minibatch indices of step ``s``, caching the current epoch's permutation.

  With ``repeat`` K > 1 each minibatch is used for K consecutive steps (step
  ``s`` takes the minibatch the one-repeat order gives step ``s // K``), so an
  epoch, every example once, takes K times as many steps.

  Args:
    seed: the run's seed.
    num_examples: size of the training set.
    batch_size: examples per minibatch; an epoch has ``num_examples //
      batch_size`` minibatches and the remainder is skipped.
    repeat: consecutive steps that use the same minibatch.

  Examples:
    >>> order = BatchOrder(0, 10, 2, repeat=2)
    >>> bool((order.indices(2) == BatchOrder(0, 10, 2).indices(1)).all())
    True
    >>> order.steps_per_epoch, order.epoch(9), order.epoch(10)
    (10, 0, 1)
  """

  def __init__(self, seed: int, num_examples: int, batch_size: int, repeat: int = 1):
    self.seed, self.num_examples, self.batch_size = seed, num_examples, batch_size
    self.repeat = repeat
    self.batches_per_epoch = steps_per_epoch(num_examples, batch_size)
    self.steps_per_epoch = steps_per_epoch(num_examples, batch_size, repeat)
    self._epoch, self._perm = -1, np.empty(0, np.int64)

  def epoch(self, step: int) -> int:
    """The zero-based epoch that step ``step`` (zero-based) belongs to."""
    return step // self.steps_per_epoch

  def indices(self, step: int) -> np.ndarray:
    """Indices of the examples of the zero-based step ``step``."""
    epoch = self.epoch(step)
    if epoch != self._epoch:
      self._epoch = epoch
      self._perm = epoch_permutation(self.seed, epoch, self.num_examples)
    start = (step // self.repeat % self.batches_per_epoch) * self.batch_size
    idx = self._perm[start:start + self.batch_size]
    if idx.shape[0] < self.batch_size:  # Batch larger than the dataset.
      idx = np.resize(self._perm, self.batch_size)
    return idx


def steps_per_epoch(num_examples: int, batch_size: int, repeat: int = 1) -> int:
  """Steps per epoch: ``num_examples // batch_size`` full minibatches (at least
  one; the last partial batch is dropped), each used for ``repeat`` steps (the
  rule of ``--epochs`` and of :class:`BatchOrder`)."""
  return max(1, num_examples // batch_size) * repeat
