"""`torchrun --nproc_per_node 2 -m vertebra train` against one process, on this machine (gloo).

With the same global batch, each of two processes takes half of every batch of one process's
order (DistributedSampler's permutation) and DistributedDataParallel averages the gradients,
so the runs differ only by floating-point summation order.  The model has no BatchNorm and no
dropout (whose per-process statistics and masks would differ by design).  Stated tolerance:
the final weights agree to 1e-4 relative, the recorded losses to 1e-4.
"""
import json
import os
import subprocess
import sys

import torch
from safetensors.torch import load_file

from vertebra.testing import relative_error

ARGS = ["lstm_classifier", "--epochs", "2", "--batch-size", "32", "--limit", "192", "--seed", "5",
        "--optimizer", "adamw"]


def run(command, out):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([*command, "--out", str(out)], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def final(folder):
    record = json.loads((folder / "checkpoint.json").read_text())
    return record, load_file(folder / record["weights"])


def test_two_processes_give_the_single_process_result(tmp_path):
    run([sys.executable, "-m", "vertebra", "train", *ARGS], tmp_path / "one")
    two = run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "vertebra", "train", *ARGS], tmp_path / "two")
    single_record, single = final(tmp_path / "one")
    double_record, double = final(tmp_path / "two")
    assert single.keys() == double.keys()
    assert max(relative_error(double[k], single[k]) for k in single) <= 1e-4
    for a, b in zip(single_record["history"], double_record["history"]):
        assert abs(a["train_loss"] - b["train_loss"]) <= 1e-4 * abs(a["train_loss"])
    assert two.stdout.count("epoch 2: train loss") == 1  # only rank 0 prints
