"""Append-only JSON-lines logs (the finished trials, the proposals), each line fsynced.

A kill can cut the last line short; that line never counted (its writer had not returned), so
``trim`` cuts it off before anything else is appended, and its trial simply runs again.
"""
from __future__ import annotations

import json
from pathlib import Path

from ...durable import append_line


class Journal:
    def __init__(self, path: Path):
        self.path = Path(path)

    def read(self) -> list[dict]:
        """The whole lines; a torn last line is not a record."""
        if not self.path.exists():
            return []
        records = []
        for number, line in enumerate(self.path.read_text().splitlines(keepends=True), 1):
            if not line.endswith("\n"):
                break
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise ValueError(f"{self.path} line {number} is damaged ({error}); it was not written by "
                                 f"an interrupted append, so vertebra will not guess: move the file away") from None
        return records

    def trim(self) -> bool:
        """Cut a torn last line, so appends start on a fresh line; whether there was one."""
        if not self.path.exists():
            return False
        data = self.path.read_bytes()
        whole = data[: data.rfind(b"\n") + 1]
        if len(whole) == len(data):
            return False
        with self.path.open("r+b") as handle:
            handle.truncate(len(whole))
        return True

    def append(self, record: dict) -> None:
        """The record is durable when this returns."""
        append_line(self.path, json.dumps(record))
