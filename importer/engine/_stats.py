"""Counters of one run, read by the progress display and the run record."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class RunStats:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    edges_created: int = 0
    edges_pending: int = 0
    files_uploaded: int = 0
    bulks: int = 0
    records: int = 0
    started: float = field(default_factory=time.monotonic)

    def summary(self) -> str:
        return (
            f"{self.created} created, {self.updated} updated, {self.unchanged} unchanged, "
            f"{self.edges_created} edges, {self.files_uploaded} files"
        )
