"""The ``zosam-train`` command: the training program, or one line saying what to install.

The core install (``pip install zosam_jax``) is the library alone; the training
program needs the ``train`` extra (Orbax, scikit-learn, matplotlib, tqdm).
Without it ``zosam-train`` ends with the ``pip install`` to run, not a traceback.
"""

import importlib.util
import sys

#: The import name of each of the ``train`` extra's packages.
TRAIN_EXTRA = ("orbax.checkpoint", "sklearn", "matplotlib", "tqdm")


def missing() -> list[str]:
  """The ``train`` extra's packages that cannot be imported here."""
  out = []
  for name in TRAIN_EXTRA:
    try:
      found = importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # A parent package is missing.
      found = False
    if not found:
      out.append(name)
  return out


def main() -> int:
  """Runs ``zosam-train`` (:func:`zosam_jax.train.cli.main`) when its
  dependencies are installed; else prints what to install and returns 1."""
  absent = missing()
  if absent:
    print(f"zosam-train: error: the training program needs the train extra ({', '.join(absent)} "
          "missing): pip install 'zosam_jax[train]'", file=sys.stderr)
    return 1
  from zosam_jax.train import cli  # pylint: disable=import-outside-toplevel
  return cli.main()


if __name__ == "__main__":
  sys.exit(main())
