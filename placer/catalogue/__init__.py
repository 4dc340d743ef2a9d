"""Built-in catalogue of hardware profiles.

Each profile is one JSON file in ``placer/catalogue/hardware/``, named ``<name>.json`` and
validated against :class:`placer.schema.hardware.HardwareProfile`. Every figure carries its source
in the profile's ``sources`` map.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

from placer.schema.hardware import HardwareProfile

__all__ = ["hardware_catalogue"]


@lru_cache(maxsize=1)
def hardware_catalogue() -> dict[str, HardwareProfile]:
    """All built-in hardware profiles, keyed by catalogue id (``name``).

    Raises ``ValueError`` when two files declare the same name or a file's name differs from its
    stem, and pydantic's ``ValidationError`` when a file does not fit the schema.
    """
    folder = resources.files(__package__).joinpath("hardware")
    profiles: dict[str, HardwareProfile] = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".json"):
            continue
        profile = HardwareProfile.model_validate(json.loads(entry.read_text(encoding="utf-8")))
        stem = entry.name[: -len(".json")]
        if profile.name != stem:
            raise ValueError(f"hardware catalogue: {entry.name} declares name {profile.name!r}, expected {stem!r}")
        if profile.name in profiles:
            raise ValueError(f"hardware catalogue: duplicate profile name {profile.name!r}")
        profiles[profile.name] = profile
    return profiles
