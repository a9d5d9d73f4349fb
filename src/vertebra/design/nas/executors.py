"""Where trials run: a local process pool, or Ray tasks on a local instance or an existing cluster.

Both take a list of trial specs and yield results as trials finish; the search orders them by
trial number, so the executor never changes which architectures are sampled.
"""
from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed

from .trial import run_trial


def _single_threaded_worker() -> None:
    import torch

    torch.set_num_threads(1)  # K workers on K cores; each trial sets its own count again


class LocalExecutor:
    """A pool of worker processes (spawned, so no parent state or threads leak into them)."""

    name = "local"

    def __init__(self, workers: int):
        self.workers = workers
        self.pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=_single_threaded_worker)

    def run(self, specs: list[dict]) -> Iterator[dict]:
        futures = [self.pool.submit(run_trial, spec) for spec in specs]
        for future in as_completed(futures):
            yield future.result()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


class RayExecutor:
    """Ray tasks of one CPU each.  With an address, joins that cluster (``ray start --head`` or a
    cloud cluster); without one, starts a local Ray instance with ``workers`` CPUs and stops it at the end."""

    name = "ray"

    def __init__(self, workers: int, address: str | None = None):
        try:
            import ray
        except ImportError:
            raise ValueError("the ray executor needs Ray: pip install 'vertebra[ray]'") from None
        self.ray, self.started = ray, not ray.is_initialized()
        if self.started:
            options = {"address": address} if address else {"num_cpus": workers, "include_dashboard": False}
            ray.init(log_to_driver=False, configure_logging=False, **options)
        self.task = ray.remote(num_cpus=1, max_retries=0)(run_trial)

    def run(self, specs: list[dict]) -> Iterator[dict]:
        pending = [self.task.remote(spec) for spec in specs]
        while pending:
            done, pending = self.ray.wait(pending, num_returns=1)
            yield self.ray.get(done[0])

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()


def make_executor(name: str, workers: int, address: str | None = None):
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    if name == "local":
        if address:
            raise ValueError("--ray-address needs --executor ray")
        return LocalExecutor(workers)
    if name == "ray":
        return RayExecutor(workers, address)
    raise ValueError(f"executor must be 'local' or 'ray', got {name!r}")
