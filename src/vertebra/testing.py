"""Helpers shared by the tests and tools/record_reference.py.

Reference parity works without the reference libraries at test time: the recording tool
fills a torchvision/timm model with ``synthetic_state_dict(manifest, seed)`` and stores its
logits; the test rebuilds the same tensors from the manifest, loads them into the vertebra
model through a key map, and compares.  The numbers come from a counter-based generator
(splitmix64 on the element index, keyed by a hash of the tensor's name) so they are the
same whatever the torch or numpy version, platform or order in which tensors are made.
"""
from __future__ import annotations

import hashlib
import math

import numpy as np
import torch

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix64(counter: np.ndarray) -> np.ndarray:
    z = counter + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def uniform(shape, seed: int, name: str) -> torch.Tensor:
    """Deterministic float32 values, uniform in [-1, 1), for tensor ``name`` of ``shape``."""
    start = int.from_bytes(hashlib.blake2b(f"{seed}:{name}".encode(), digest_size=8).digest(), "little")
    count = math.prod(shape)
    with np.errstate(over="ignore"):
        bits = _splitmix64(np.arange(count, dtype=np.uint64) + np.uint64(start))
    values = (bits >> np.uint64(11)).astype(np.float64) * (2.0 / 2**53) - 1.0
    return torch.from_numpy(values.astype(np.float32)).reshape(tuple(shape))


def synthetic_input(shape, seed: int = 0) -> torch.Tensor:
    """A deterministic image batch with unit variance."""
    return uniform(shape, seed, "input") * math.sqrt(3.0)


def synthetic_state_dict(manifest: list[dict], seed: int = 0) -> dict[str, torch.Tensor]:
    """Deterministic, plausibly scaled weights for the keys, shapes and dtypes of ``manifest``.

    Convolution and linear weights are He-scaled (uniform, variance 2 / fan-in) so that deep
    nets neither explode nor vanish; BatchNorm gets weights in [0.25, 0.75], small means and
    variances near one; biases are small.  ``manifest`` is a list of ``{"key", "shape", "dtype"}``.
    """
    keys = {entry["key"] for entry in manifest}
    state = {}
    for entry in manifest:
        key, shape, dtype = entry["key"], tuple(entry["shape"]), getattr(torch, entry["dtype"])
        stem, _, leaf = key.rpartition(".")
        is_norm = f"{stem}.running_var" in keys
        u = uniform(shape, seed, key)
        if not dtype.is_floating_point:
            tensor = torch.zeros(shape, dtype=dtype)  # num_batches_tracked
        elif leaf == "weight" and len(shape) >= 2:
            fan_in = math.prod(shape[1:])
            tensor = u * math.sqrt(6.0 / fan_in)
        elif is_norm and leaf == "weight":
            tensor = 0.5 + 0.25 * u
        elif leaf == "running_var":
            tensor = 1.0 + 0.5 * u
        elif leaf == "running_mean":
            tensor = 0.1 * u
        else:  # biases of norms, convolutions and linear layers
            tensor = 0.05 * u
        state[key] = tensor.to(dtype)
    return state


def manifest_of(state_dict: dict[str, torch.Tensor]) -> list[dict]:
    """The (key, shape, dtype) list that ``synthetic_state_dict`` rebuilds tensors from."""
    return [{"key": k, "shape": list(v.shape), "dtype": str(v.dtype).removeprefix("torch.")}
            for k, v in state_dict.items()]


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """||actual - expected|| / ||expected||, in float64."""
    actual, expected = actual.double(), expected.double()
    return float((actual - expected).norm() / expected.norm().clamp_min(1e-30))
