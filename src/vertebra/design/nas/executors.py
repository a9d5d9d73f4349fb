"""Where trials run: in this process, a local process pool, or Ray tasks on a local instance or a cluster.

Each executor takes trial specs (``submit``) and hands back results as trials finish (``wait``);
the search decides what a result means, so the executor never changes which architectures are
sampled.  Local workers die with the search, however it ends (a kill included).
"""
from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor
from concurrent.futures import wait as wait_futures

from . import trial as trial_module

EXECUTORS: dict[str, type] = {}


def register_executor(cls: type) -> type:
    EXECUTORS[cls.name] = cls
    return cls


def _run_trial(spec: dict) -> dict:
    return trial_module.run_trial(spec)  # looked up at call time: the crash-point tests replace it


def _worker_init() -> None:
    """One thread per worker (K workers on K cores), and no life after the parent's."""
    import torch

    torch.set_num_threads(1)
    parent = os.getppid()
    try:  # Linux: the kernel kills this worker the moment its parent dies
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:
        os._exit(1)

    def watch() -> None:  # elsewhere: notice the parent is gone within a second
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


@register_executor
class InlineExecutor:
    """Trials one after another in this process (debugging, and the crash-point tests)."""

    name = "inline"

    def __init__(self, workers: int = 1, address: str | None = None):
        self.queue: list[dict] = []

    @property
    def in_flight(self) -> int:
        return len(self.queue)

    def submit(self, spec: dict) -> None:
        self.queue.append(spec)

    def wait(self) -> dict:
        return _run_trial(self.queue.pop(0))

    def close(self) -> None:
        self.queue.clear()


@register_executor
class LocalExecutor:
    """A pool of worker processes (spawned, so no parent state or threads leak into them)."""

    name = "local"

    def __init__(self, workers: int, address: str | None = None):
        self.pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=_worker_init)
        self.futures: set = set()

    @property
    def in_flight(self) -> int:
        return len(self.futures)

    def submit(self, spec: dict) -> None:
        self.futures.add(self.pool.submit(_run_trial, spec))

    def wait(self) -> dict:
        done, _ = wait_futures(self.futures, return_when=FIRST_COMPLETED)
        future = min(done, key=id)
        self.futures.remove(future)
        return future.result()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


@register_executor
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
        self.task = ray.remote(num_cpus=1, max_retries=0)(trial_module.run_trial)
        self.refs: list = []

    @property
    def in_flight(self) -> int:
        return len(self.refs)

    def submit(self, spec: dict) -> None:
        self.refs.append(self.task.remote(spec))

    def wait(self) -> dict:
        done, self.refs = self.ray.wait(self.refs, num_returns=1)
        return self.ray.get(done[0])

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()


def make_executor(name: str, workers: int, address: str | None = None):
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    if name not in EXECUTORS:
        raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}, got {name!r}")
    if address and name != "ray":
        raise ValueError("--ray-address needs --executor ray")
    return EXECUTORS[name](workers, address)


def run_specs(specs: list[dict], journal, executor: str, workers: int, address: str | None = None) -> list[dict]:
    """Train every spec on a new executor, each record appended to ``journal`` as it finishes (a
    kill loses no finished trial); returns the records in finishing order."""
    if not specs:
        return []
    runner, records = make_executor(executor, workers, address), []
    try:
        for spec in specs:
            runner.submit(spec)
        while runner.in_flight:
            records.append(runner.wait())
            journal.append(records[-1])
    finally:
        runner.close()
    return records


def run_grid(out, identity: dict, specs: list[dict], executor: str, workers: int,
             address: str | None = None) -> list[dict]:
    """A fixed set of trials (``spec["trial"]`` their index), resumable: ``out/grid.json`` records
    what they are and a different set is refused; each finished trial is appended to
    ``out/journal.jsonl`` and never run again.  Returns the records in index order."""
    from pathlib import Path

    from ...durable import check_output_folder, differing, read_json, write_json
    from .journal import Journal

    out = check_output_folder(Path(out), "the grid folder")
    if (out / "grid.json").exists():
        recorded = read_json(out / "grid.json", "the grid's identity")
        if recorded != identity:
            raise ValueError(f"{out} holds a grid of other settings (differing: "
                             f"{', '.join(differing(recorded, identity))}); move it away to run this one")
    else:
        write_json(out / "grid.json", identity)
    journal = Journal(out / "journal.jsonl")
    journal.trim()
    finished = {record["trial"]: record for record in journal.read()}
    for record in run_specs([s for s in specs if s["trial"] not in finished], journal, executor, workers, address):
        finished[record["trial"]] = record
    return [finished[i] for i in sorted(finished)]
