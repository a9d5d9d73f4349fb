"""A real SIGKILL in the middle of an evolution and a set search: the resumed search trains every
child exactly once and never again one that had finished (the crash-point harness covers every
file-system operation in-process; this kills the process itself)."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

ARGS = {"evolution": ["--trials", "3", "--population", "2", "--sample", "2"], "set": ["--set-size", "2"]}
TRIALS = {"evolution": 3, "set": 3}  # set: 2, then the better one


def finished(out):
    path = out / "journal.jsonl"
    text = path.read_text() if path.exists() else ""
    return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]


@pytest.mark.parametrize("strategy", sorted(ARGS))
def test_sigkill_mid_search_then_resume_trains_each_child_once(tmp_path, strategy):
    out = tmp_path / strategy
    command = [sys.executable, "-m", "vertebra", "search", strategy, "--space", "mnas_blocks", "--executor",
               "inline", "--epochs", "1", "--limit", "64", "--seed", "3", "--out", str(out), *ARGS[strategy]]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None and not finished(out):
        time.sleep(0.05)
    assert process.poll() is None, f"the search ended before it could be killed: {process.stderr.read()}"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    before = finished(out)
    assert 1 <= len(before) < TRIALS[strategy]
    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    after = finished(out)
    assert after[:len(before)] == before  # finished children kept as they were, not trained again
    assert sorted(r["trial"] for r in after) == list(range(TRIALS[strategy]))  # none lost, none twice
