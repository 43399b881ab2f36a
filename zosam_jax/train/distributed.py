"""Several processes, one run: ``jax.distributed`` (JAX's multi-controller runtime).

One process per host (or per GPU), each started with the same flags plus its
``--process-id``; ``--coordinator HOST:PORT`` is process 0's address
(``--coordinator auto``: JAX's own cluster detection on TPU pods, SLURM, Open
MPI). :func:`initialize` connects them before anything else touches JAX and
refuses processes started with different flags (:func:`check_same_config`).
Every process reads only its slice of each global batch
(:func:`global_batch`), in the global batch order of one process; all draw
the same ZO-SAM directions, since the key is part of the replicated state.
Process 0 alone writes the run folder's files and takes its lock; every
process takes part in the checkpoints (Orbax writes a multi-host checkpoint).

A stop is agreed at a step boundary (:class:`StopRequest`): SIGTERM (a
preemption notice) or SIGINT in any process reaches every process through
JAX's preemption service, so all stop after the same step and write one
checkpoint there. A process that dies without notice (SIGKILL, a crashed
host) stops sending heartbeats: after ``--heartbeat-timeout`` seconds JAX's
coordination service ends every other process with "the JAX distributed
service detected fatal errors" (a message of JAX's runtime, and a non-zero
exit); the last checkpoint stays restorable and ``--resume`` continues from it.
"""

from __future__ import annotations

import os
import signal
import socket
import time
import zlib
from typing import Any

import jax
import numpy as np

import zosam_jax

from zosam_jax.train import config as config_lib
from zosam_jax.train import files

#: Fields that legitimately differ between the processes of one run.
_PER_PROCESS = frozenset({"process_id", "progress"})


class DistributedError(RuntimeError):
  """The processes could not be connected, or do not agree."""


def is_distributed(cfg: config_lib.TrainConfig) -> bool:
  return cfg.coordinator is not None


def initialize(cfg: config_lib.TrainConfig) -> None:
  """Connects this process to the run's others (a no-op for one process).

  Raises:
    DistributedError: the coordinator is not reachable within
      ``--distributed-timeout`` seconds, or the processes disagree on their
      number (JAX's message, with the address).
  """
  if not is_distributed(cfg):
    return
  jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU processes.
  kwargs: dict[str, Any] = dict(initialization_timeout=cfg.distributed_timeout,
                heartbeat_timeout_seconds=cfg.heartbeat_timeout)
  if cfg.coordinator != "auto":
    kwargs.update(coordinator_address=cfg.coordinator, num_processes=cfg.num_processes,
                  process_id=cfg.process_id)
    if cfg.process_id != 0 and cfg.coordinator:  # JAX aborts when it cannot connect.
      _wait_for_coordinator(cfg.coordinator, cfg.distributed_timeout, cfg)
  try:
    jax.distributed.initialize(**kwargs)
  except Exception as e:  # pylint: disable=broad-except  # JAX raises RuntimeError/ValueError.
    where = ("the cluster's coordinator" if cfg.coordinator == "auto"
             else f"the coordinator at {cfg.coordinator}")
    first = files.one_line(e)
    raise DistributedError(
        f"process {cfg.process_id} could not join {where} with "
        f"{cfg.num_processes} processes within --distributed-timeout "
        f"{cfg.distributed_timeout} s ({first}); start every process with the same "
        "--coordinator and --num-processes, process 0 first, and check the address") from None
  if cfg.num_processes is not None and jax.process_count() != cfg.num_processes:
    raise DistributedError(
        f"this process was started with --num-processes {cfg.num_processes}, but the "
        f"coordinator at {cfg.coordinator} runs {jax.process_count()} processes; start "
        "every process with the same --num-processes")


def _wait_for_coordinator(address: str, seconds: float, cfg) -> None:
  """Returns once a TCP connection to ``address`` succeeds; raises
  :class:`DistributedError` after ``seconds`` of refusals."""
  host, _, port = address.rpartition(":")
  deadline = time.monotonic() + seconds
  while True:
    try:
      with socket.create_connection((host.strip("[]"), int(port)), timeout=1.0):
        return
    except OSError as e:
      if time.monotonic() >= deadline:
        raise DistributedError(
            f"process {cfg.process_id} could not join the coordinator at {address} with "
            f"{cfg.num_processes} processes within --distributed-timeout {cfg.distributed_timeout} "
            f"s ({e.strerror or e}); start process 0 (the coordinator) with the same "
            "--coordinator, and check the address and that its port is open") from None
      time.sleep(0.2)


def num_devices(cfg: config_lib.TrainConfig, available: int) -> int:
  """The number of devices a run uses, checked against what is available.

  Args:
    cfg: the configuration.
    available: ``jax.device_count()``.

  Returns:
    The device count of this process (all of them for ``--devices all``);
    with ``--num-processes`` every process uses as many.

  Raises:
    ConfigError: if more devices are asked for than exist, or the batch size
      does not split evenly over them.
  """
  n = available if cfg.devices == "all" else int(cfg.devices)
  if n > available:
    raise config_lib.ConfigError(f"--devices {cfg.devices} asks for {n} devices, but"
                      f" only {available} are available")
  processes = cfg.num_processes or 1
  if cfg.batch_size % (n * processes):
    raise config_lib.ConfigError(f"--batch-size {cfg.batch_size} must be divisible by the"
                      f" number of devices ({n * processes}, from --devices {cfg.devices}"
                      + (f" in each of --num-processes {processes}" if processes > 1 else "")
                      + ")")
  return n


def mesh(cfg: config_lib.TrainConfig) -> jax.sharding.Mesh | None:
  """The data-parallel mesh: the first ``--devices`` devices of every process
  (``None`` for one device in one process)."""
  per_process = num_devices(cfg, jax.local_device_count())
  if per_process == 1 and jax.process_count() == 1:
    return None
  devices = [d for p in range(jax.process_count()) for d in sorted(
      (d for d in jax.devices() if d.process_index == p), key=lambda d: d.id)[:per_process]]
  return jax.sharding.Mesh(np.array(devices), ("data",))


def place(state, mesh):
  """The state replicated over the mesh (every process holds the same values)."""
  if mesh is None:
    return state
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  if jax.process_count() == 1:
    return jax.device_put(state, replicated)
  return jax.tree.map(lambda x: replicate(x, replicated), state)


def place_data(mesh, ds):
  """The training set on the devices (replicated), unless several processes
  share the run (then each step's batch is built from each process's rows);
  the batch sharding."""
  if mesh is None:
    return jax.device_put(ds.x_train), jax.device_put(ds.y_train), None
  if jax.process_count() > 1:
    return None, None, zosam_jax.data_sharding(mesh)  # (B, ...) split on dim 0.
  # Data parallel: params, optimizer state and the (small) training set are
  # replicated; each step's minibatch is split over the data axis.
  x_all, y_all = place((ds.x_train, ds.y_train), mesh)
  return x_all, y_all, zosam_jax.data_sharding(mesh)


def field_hashes(cfg: config_lib.TrainConfig) -> np.ndarray:
  """One crc32 per config field (``(F,)`` int32: JAX's default integer width),
  the per-process ones zero."""
  return np.array([0 if k in _PER_PROCESS else zlib.crc32(repr(v).encode()) & 0x7FFFFFFF
                   for k, v in sorted(cfg.to_dict().items())], np.int32)


def check_same_config(cfg: config_lib.TrainConfig) -> None:
  """Refuses to train when another process was started with other flags.

  Raises:
    config_lib.ConfigError: naming the flags that differ from process 0's.
  """
  if jax.process_count() == 1:
    return
  from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel

  mine = field_hashes(cfg)
  first = np.asarray(multihost_utils.broadcast_one_to_all(mine))
  agree = np.asarray(multihost_utils.process_allgather(np.array([int((first == mine).all())])))
  if agree.all():
    return
  names = sorted(cfg.to_dict())
  differ = [config_lib.flag(names[i]) for i in np.flatnonzero(first != mine)]
  raise config_lib.ConfigError(
      "the processes were started with different flags"
      + (f" (this one differs from process 0 in {', '.join(differ)})" if differ else
         " (another process differs from process 0)")
      + "; start every process with the same flags but --process-id")


def barrier(name: str) -> None:
  """Waits until every process reaches the same ``name`` (one process: returns)."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
    multihost_utils.sync_global_devices(name)


def is_main() -> bool:
  """Whether this process writes the run folder's files (process 0)."""
  return jax.process_index() == 0


def host_value(x: Any) -> np.ndarray:
  """A replicated (or local) array's value on the host, also when it spans
  other processes' devices (where ``np.asarray`` refuses)."""
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    x = x.addressable_data(0)
  return np.asarray(x)


def replicate(x: Any, sharding: Any) -> jax.Array:
  """``x`` (a host or local array, the same in every process, a typed PRNG
  key too) as a global array of the replicated ``sharding``."""
  if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
    return jax.random.wrap_key_data(replicate(jax.random.key_data(x), sharding),
                                    impl=jax.random.key_impl(x))
  value = np.asarray(x)
  return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])


def process_slice(batch: int) -> slice:
  """This process's rows of a global batch of ``batch`` rows."""
  n, i = jax.process_count(), jax.process_index()
  return slice(i * batch // n, (i + 1) * batch // n)


def global_batch(sharding: Any, host_arrays: tuple[np.ndarray, ...],
                 indices: np.ndarray | None = None) -> tuple[jax.Array, ...]:
  """Global arrays of ``sharding`` (split on dim 0), each process giving its
  rows: of ``a[indices]`` for each array ``a`` (only this process's indices
  are read), or of ``a`` itself when ``indices`` is ``None``.

  Shapes: ``a`` ``(N, ...)``, ``indices`` ``(B,)`` or ``(K, B)`` (K seeds, with a
  ``sharding`` split on dim 1); each result ``(B, ...)`` or ``(K, B, ...)``
  (``(N, ...)`` without indices), of which this process holds ``B / P`` rows.
  """
  size = host_arrays[0].shape[0] if indices is None else indices.shape[-1]
  rows = process_slice(size)
  take = (lambda a: a[rows]) if indices is None else (lambda a: a[indices[..., rows]])
  return tuple(jax.make_array_from_process_local_data(sharding, np.asarray(take(a)))
               for a in host_arrays)


class StopRequest:
  """Whether to stop after a step, agreed by every process.

  With several processes: JAX's preemption service
  (``multihost_utils.reached_preemption_sync_point``), which SIGTERM in any
  process triggers; SIGINT is turned into a SIGTERM of this process. With one:
  a SIGTERM handler sets a flag (SIGINT stays a ``KeyboardInterrupt``).
  Installed for the training loop and removed after it (a context manager).
  """

  def __init__(self, distributed: bool):
    self.distributed = distributed
    self._saved: dict[int, Any] = {}
    self.signal_name: str | None = None

  def __enter__(self) -> StopRequest:
    def on_term(signum, frame):  # pylint: disable=unused-argument
      self.signal_name = "SIGTERM"
    def on_int(signum, frame):  # pylint: disable=unused-argument
      self.signal_name = "SIGINT"
      os.kill(os.getpid(), signal.SIGTERM)  # JAX's service tells the others.
    handlers = {signal.SIGINT: on_int} if self.distributed else {signal.SIGTERM: on_term}
    for signum, handler in handlers.items():
      self._saved[signum] = signal.signal(signum, handler)
    return self

  def __exit__(self, *exc_info) -> None:
    for signum, handler in self._saved.items():
      signal.signal(signum, handler)

  def requested(self, step: int) -> bool:
    """Call after every step, in every process, with the same ``step``."""
    if not self.distributed:
      return self.signal_name is not None
    from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
    if multihost_utils.reached_preemption_sync_point(step):
      self.signal_name = self.signal_name or "a process's SIGTERM"  # Maybe another's.
      return True
    return False


def free_port(host: str = "127.0.0.1") -> int:
  """A TCP port nobody listens on at ``host`` now (for a local coordinator)."""
  with socket.socket() as s:
    s.bind((host, 0))
    return s.getsockname()[1]


def launch_local(argv: list[str], num_processes: int, devices_per_process: int = 1,
                 extra: list[list[str]] | None = None, **popen: Any) -> list[Any]:
  """Starts the ``num_processes`` processes of one run on this machine.

  Each is ``python -m zosam_jax.train ARGV --coordinator 127.0.0.1:PORT
  --num-processes N --process-id I`` (a free port), with
  ``devices_per_process`` simulated CPU devices; for tests, benchmarks and
  trying the multi-process program on one machine. The caller waits for them
  (bounded) and ends them by their pid.

  Args:
    argv: the run's flags (the same for every process).
    num_processes: how many processes.
    devices_per_process: CPU devices of each (``XLA_FLAGS``).
    extra: per process, flags appended to its command line.
    **popen: passed to ``subprocess.Popen`` (e.g. ``stdout=subprocess.PIPE``).

  Returns:
    The ``subprocess.Popen`` objects, process 0 first.
  """
  import subprocess  # pylint: disable=import-outside-toplevel
  import sys  # pylint: disable=import-outside-toplevel

  port = free_port()
  env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count="
             f"{devices_per_process}")
  return [subprocess.Popen(  # pylint: disable=consider-using-with
      [sys.executable, "-m", "zosam_jax.train", *argv, "--coordinator", f"127.0.0.1:{port}",
       "--num-processes", str(num_processes), "--process-id", str(i),
       *((extra or [[]] * num_processes)[i])], env=env, **popen)
      for i in range(num_processes)]
