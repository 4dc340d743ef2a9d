"""The per-point cache that makes a sweep resumable: one small JSON file per point key.

Each answer is written (atomically) the moment it comes back, so a sweep that is killed keeps
every point that finished, and a rerun solves only the keys not yet on disk. The key already holds
placer's version and the solver settings (:func:`placer.sweep.grid.point_key`), so an answer is
never reused for a different instance, version or setting. A point whose solve raised is stored
too (a deterministic failure would fail again); ``retry_errors`` solves such points once more.
"""

from __future__ import annotations

import json
from pathlib import Path

from placer.files import write_atomic
from placer.sweep.point import PointAnswer

CACHE_FORMAT = "placer.sweep-point/1"


class PointStore:
    """Answers filed by point key under ``folder`` (``<folder>/<key>.json``)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.json"

    def get(self, key: str) -> PointAnswer | None:
        """The stored answer, or ``None`` when there is none (or the file is not one of ours)."""
        try:
            data = json.loads(self.path(key).read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError, UnicodeDecodeError):
            return None
        if not isinstance(data, dict) or data.get("format") != CACHE_FORMAT or data.get("key") != key:
            return None
        return PointAnswer(key, dict(data["figures"]), float(data["wall_s"]))

    def put(self, answer: PointAnswer) -> None:
        document = {"format": CACHE_FORMAT, "key": answer.key, "figures": answer.figures, "wall_s": answer.wall_s}
        write_atomic(self.path(answer.key), json.dumps(document, indent=1, sort_keys=True) + "\n")
