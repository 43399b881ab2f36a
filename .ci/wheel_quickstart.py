"""Runs the README's Python examples (the quickstart, the sparse example).

Called by .ci/run from a fresh virtual environment outside the checkout, where
zosam_jax is installed from the built wheel without extras: what a Colab user
gets. Importing it loads none of the training program's dependencies, and
``zosam-train`` there says in one line what to install.
"""

import re
import subprocess
import sys
from pathlib import Path

import zosam_jax
import zosam_jax.sparse

TRAIN_EXTRA = ("orbax", "sklearn", "matplotlib", "tqdm")
loaded = [m for m in TRAIN_EXTRA if m in sys.modules]
assert not loaded, f"importing zosam_jax loaded the trainer's dependencies {loaded}"

readme = Path(sys.argv[1]).read_text()
blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
assert "site-packages" in zosam_jax.__file__, zosam_jax.__file__  # Not the checkout.
assert "zosam_jax.zo_sam(" in blocks[0] and len(blocks) >= 2, "README: no quickstart"
for i, block in enumerate(blocks):
  exec(compile(block, f"README.md[{i}]", "exec"), {"__name__": "__main__"})
script = Path(sys.executable).with_name("zosam-train")
done = subprocess.run([str(script)], capture_output=True, text=True, timeout=300, check=False)
assert done.returncode == 1 and "pip install 'zosam_jax[train]'" in done.stderr, done.stderr
print(f"README's {len(blocks)} examples from the wheel without extras: OK")
