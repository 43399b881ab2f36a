"""``python -m zosam_jax.train``: the same as ``zosam-train``."""

import sys

from zosam_jax.train.cli import main

if __name__ == "__main__":
  sys.exit(main())
