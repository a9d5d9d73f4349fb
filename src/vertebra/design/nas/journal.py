"""The search journal: one JSON line per finished trial, appended and synced as each one ends.

A kill can cut the last line short; reading drops such a tail (that trial simply runs again),
and opening for append first trims it so the next record starts on a line of its own.
"""
from __future__ import annotations

import json
import os
from pathlib import Path


class Journal:
    def __init__(self, path: Path):
        self.path = Path(path)

    def read(self) -> list[dict]:
        if not self.path.exists():
            return []
        records = []
        for line in self.path.read_text().splitlines(keepends=True):
            if not line.endswith("\n"):
                break  # the tail of a write that a kill interrupted
            records.append(json.loads(line))
        return records

    def trim(self) -> None:
        """Cut a partial last line, so appends start on a fresh line."""
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        whole = data[: data.rfind(b"\n") + 1]
        if len(whole) != len(data):
            with self.path.open("r+b") as handle:
                handle.truncate(len(whole))

    def append(self, record: dict) -> None:
        with self.path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
