"""Devices: one code path for 1 device, N devices and N hosts.

The training state and every batch live on a `jax.sharding.Mesh` with two axes:

    seeds  the K vmapped replicas (train.num_seeds) are split over these devices; K seeds on K
           devices is one program with no communication between them.
    data   each batch's rows are split over these devices; parameters are replicated and the
           gradients are summed over the axis inside the step (`steps.make_train_step`).

`config.mesh` picks the layout (`data=-1`: every device not used by `seeds`). The global batch
is fixed by the config, so a run computes the same losses on 1 device, N devices or N hosts (up
to float summation order); only dropout masks differ, because each data shard draws its own.

On a CPU host, `mesh.cpu_devices` splits the host into that many XLA devices: XLA runs the small
matmuls of a small model on one thread per device, so on a multi-core CPU data parallelism over
host devices is how a small model uses every core.

Several processes (hosts): `initialize_distributed` calls `jax.distributed.initialize()` when the
process is one task of a multi-task SLURM step, or when JAX_COORDINATOR_ADDRESS /
JAX_NUM_PROCESSES / JAX_PROCESS_ID are set. Every process computes the same global batch (a cheap
NumPy gather) and transfers only the rows of its own devices; only process 0 writes files.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

SEEDS, DATA = "seeds", "data"

# Multi-device steps are waited on at least this often: on a host with few cores, dispatching
# many multi-device steps without waiting can deadlock XLA's CPU all-reduce.
MAX_STEPS_IN_FLIGHT = 4


def set_cpu_devices(count: int) -> None:
    """Splits the CPU backend into `count` devices (0: leave JAX's default). Must run before JAX
    initialises its backends; afterwards a differing request only logs a warning."""
    if count <= 0:
        return
    from jax._src import xla_bridge
    if xla_bridge.backends_are_initialized():
        if jax.default_backend() == "cpu" and jax.local_device_count() != count:
            logging.warning("mesh.cpu_devices=%d ignored: JAX already started with %d CPU "
                            "devices in this process.", count, jax.local_device_count())
        return
    jax.config.update("jax_num_cpu_devices", count)


def initialize_distributed() -> bool:
    """`jax.distributed.initialize()` when this process is one of several; returns whether it
    did. Detected: a SLURM step with more than one task, or JAX_COORDINATOR_ADDRESS with
    JAX_NUM_PROCESSES and JAX_PROCESS_ID in the environment."""
    env = os.environ
    if env.get("JAX_COORDINATOR_ADDRESS"):
        missing = [k for k in ("JAX_NUM_PROCESSES", "JAX_PROCESS_ID") if k not in env]
        if missing:
            raise ValueError(f"JAX_COORDINATOR_ADDRESS is set but {', '.join(missing)} is not; "
                             "set all three (or none for a single process).")
        jax.distributed.initialize(coordinator_address=env["JAX_COORDINATOR_ADDRESS"],
                                   num_processes=int(env["JAX_NUM_PROCESSES"]),
                                   process_id=int(env["JAX_PROCESS_ID"]))
        return True
    if int(env.get("SLURM_NTASKS", "1")) > 1 and "SLURM_STEP_ID" in env:
        jax.distributed.initialize()  # Coordinator, count and id from SLURM's environment.
        return True
    return False


def mesh_shape(data: int, seeds: int, num_devices: int, num_seeds: int) -> tuple[int, int]:
    """(seeds, data) device counts for config.mesh; ValueError naming the fix if impossible."""
    if seeds < 1 or data == 0 or data < -1:
        raise ValueError(f"config.mesh: seeds={seeds}, data={data}; use seeds >= 1 and data >= 1 "
                         "(or data=-1 for every remaining device).")
    if num_seeds % seeds:
        raise ValueError(f"config.mesh.seeds={seeds} does not divide train.num_seeds="
                         f"{num_seeds}; use a divisor of the number of seeds.")
    if data == -1:
        if num_devices % seeds:
            raise ValueError(f"config.mesh.seeds={seeds} does not divide the {num_devices} "
                             "devices; set mesh.data explicitly or change mesh.seeds.")
        data = num_devices // seeds
    if seeds * data > num_devices:
        raise ValueError(f"config.mesh asks for seeds={seeds} x data={data} devices but "
                         f"{num_devices} exist; lower mesh.data / mesh.seeds.")
    return seeds, data


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where the state and batches live, and how results come back to the host."""

    mesh: Mesh

    @property
    def data_size(self) -> int:
        return self.mesh.shape[DATA]

    @property
    def seeds_size(self) -> int:
        return self.mesh.shape[SEEDS]

    @property
    def size(self) -> int:
        return self.mesh.size

    @property
    def steps_in_flight(self) -> int | None:
        """How many training steps may be dispatched before one is waited on: None (no limit)
        on one device, which has no all-reduce to deadlock, so its steps keep overlapping."""
        return MAX_STEPS_IN_FLIGHT if self.size > 1 else None

    def _put(self, tree: Any, spec: P) -> Any:
        sharding = NamedSharding(self.mesh, spec)

        def put(x):
            x = np.asarray(x)
            return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

        return jax.tree.map(put, tree)

    def state(self, state: Any) -> Any:
        """A state with leaves [K, ...]: replicas over `seeds`, replicated over `data`."""
        return self._put(jax.device_get(state), P(SEEDS))

    def train_batch(self, batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
        """[K, B, L] arrays: replicas over `seeds`, rows over `data` (B % data == 0)."""
        return self._put({k: v for k, v in batch.items() if k != "index"}, P(SEEDS, DATA))

    def eval_batch(self, batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
        """[B, L] arrays: rows over `data` (every seeds group holds the whole batch)."""
        return self._put(batch, P(DATA))

    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, P())

    def gather(self, tree: Any) -> Any:
        """Device arrays -> NumPy on this host (across processes when there are several)."""
        if jax.process_count() == 1:
            return jax.device_get(tree)
        return multihost_utils.process_allgather(tree, tiled=True)


def single_device() -> Layout:
    """The Layout of one device (this process's first): the state and batches live there."""
    return Layout(Mesh(np.asarray(jax.local_devices()[:1]).reshape(1, 1), (SEEDS, DATA)))


def make_layout(mesh_cfg: Any, num_seeds: int) -> Layout:
    """The Layout for config.mesh over every device of every process."""
    devices = jax.devices()
    seeds, data = mesh_shape(mesh_cfg.data, mesh_cfg.seeds, len(devices), num_seeds)
    grid = np.asarray(devices[:seeds * data]).reshape(seeds, data)
    return Layout(Mesh(grid, (SEEDS, DATA)))


def check_batch_sizes(layout: Layout, sizes: tuple[int, ...], eval_batch_size: int) -> None:
    """Every train batch size (per bucket) and the eval batch size must split over `data`."""
    bad = [s for s in sizes if s % layout.data_size]
    if bad:
        raise ValueError(f"Train batch sizes {sizes} do not split over mesh.data="
                         f"{layout.data_size} devices; use a data.batch_size (or batch_tokens "
                         "giving sizes) divisible by it, or a smaller mesh.data.")
    if eval_batch_size % layout.data_size:
        raise ValueError(f"eval.batch_size={eval_batch_size} does not split over mesh.data="
                         f"{layout.data_size} devices; use a multiple of {layout.data_size}.")


def is_writer() -> bool:
    """Whether this process writes files (metrics, W&B, heatmaps, results): process 0 only."""
    return jax.process_index() == 0


def any_process(flag: bool) -> bool:
    """True on every process if `flag` is true on any (a collective: all processes must call)."""
    if jax.process_count() == 1:
        return flag
    return bool(np.any(multihost_utils.process_allgather(np.asarray([flag]))))


def barrier(name: str) -> None:
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)
