"""Runs README's quickstart (the first python block after "## Quickstart").

Called by .ci/run from a fresh virtual environment outside the checkout, where
zosam_jax is installed from the built wheel: what a Colab user gets.
"""

import re
import sys
from pathlib import Path

import zosam_jax

readme = Path(sys.argv[1]).read_text()
block = re.search(r"## Quickstart.*?```python\n(.*?)```", readme, re.S).group(1)
assert "site-packages" in zosam_jax.__file__, zosam_jax.__file__  # Not the checkout.
exec(compile(block, "README.md quickstart", "exec"), {"__name__": "__main__"})
print("quickstart from the wheel: OK")
