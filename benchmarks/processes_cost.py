"""Steps per second of one run on two processes against one process (informational).

The same run (digits, batch 128, the global batch split over 2 devices) as one
process with 2 CPU devices (``--devices 2``) and as 2 processes with one CPU
device each (``--coordinator 127.0.0.1:PORT --num-processes 2``, started with
:func:`zosam_jax.train.distributed.launch_local`). The figure is the
program's own steady ``steps_per_second`` from ``summary.json`` (first window,
with compilation, left out). On this 2-core CPU both layouts share the same
two cores and the processes talk through gloo over the loopback: the numbers
say what two processes cost here, not what a multi-host GPU or TPU run does
(not measured on GPU).

Usage::

  python benchmarks/processes_cost.py --steps 300 --out benchmarks/results/processes_cost_cpu.json
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

from zosam_jax.train import distributed

LAYOUTS = ("1 process x 2 devices", "2 processes x 1 device")


def _run(layout: str, flags: list[str], workdir: Path) -> float:
  """Steady steps per second of one layout (the program's own figure)."""
  argv = [*flags, "--workdir", str(workdir)]
  if layout == LAYOUTS[0]:
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    subprocess.run([sys.executable, "-m", "zosam_jax.train", *argv, "--devices", "2"],
                   env=env, check=True, capture_output=True, timeout=900)
  else:
    procs = distributed.launch_local(argv, 2, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
    try:
      codes = [p.wait(timeout=900) for p in procs]
    finally:
      for p in procs:
        if p.poll() is None:
          os.kill(p.pid, 9)
    if codes != [0, 0]:
      raise RuntimeError(f"the two processes exited with {codes}")
  return json.loads((workdir / "summary.json").read_text())["steps_per_second"]


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--steps", type=int, default=300)
  parser.add_argument("--optimizers", default="sgd,zosam")
  parser.add_argument("--out", default=None)
  args = parser.parse_args()
  rows = []
  print("| optimizer | layout | steps/s | ÷ one process |\n|---|---|---|---|")
  for optimizer in args.optimizers.split(","):
    flags = ["--model", "mlp", "--optimizer", optimizer, "--steps", str(args.steps),
             "--eval-every", str(args.steps), "--checkpoint-every", "0", "--no-progress"]
    with tempfile.TemporaryDirectory() as tmp:
      speed = {layout: _run(layout, flags, Path(tmp) / str(i))
               for i, layout in enumerate(LAYOUTS)}
    for layout in LAYOUTS:
      rows.append(dict(optimizer=optimizer, layout=layout, steps_per_second=speed[layout],
                       ratio=speed[layout] / speed[LAYOUTS[0]]))
      print(f"| {optimizer} | {layout} | {speed[layout]:.1f} | {rows[-1]['ratio']:.2f} |",
            flush=True)
  if args.out:
    Path(args.out).write_text(json.dumps({"header": {
        "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
        "steps": args.steps, "command": " ".join(["python"] + sys.argv)}, "rows": rows},
        indent=1))


if __name__ == "__main__":
  main()
