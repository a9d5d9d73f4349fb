"""How long vertebra.profile takes per model at its default input size (goal: < 5 s, the
largest models aside).  One JSON line per model.

    .venv/bin/python benchmarks/profile_speed.py [PATTERN ...]
"""
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
import vertebra  # noqa: E402

for name in sorted({n for p in (sys.argv[1:] or ["*"]) for n in vertebra.list_models(p)}):
    model = vertebra.create_model(name)
    start = time.perf_counter()
    result = vertebra.profile(model)
    seconds = time.perf_counter() - start
    print(json.dumps({"model": name, "input_size": result.input_size[0], "profile_s": round(seconds, 2),
                      "latency_ms": round(result.latency_ms, 2), "under_5s": seconds < 5}), flush=True)
