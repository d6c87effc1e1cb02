"""Every generator family of the zoo, registered: the families of `zoo.families`
and of `zoo.published` register themselves when their module is imported, and this
module imports both. Look families up here (`FAMILIES`, `create_gm`)."""

from __future__ import annotations

from gmtrace.zoo import published  # noqa: F401 (registers the published families)
from gmtrace.zoo.families import FAMILIES, GM

__all__ = ["FAMILIES", "create_gm"]


def create_gm(family: str, config: dict, res: int) -> GM:
    """Build a GM by family name and config."""
    if family not in FAMILIES:
        raise KeyError(f"unknown family {family!r}; known: {', '.join(FAMILIES)}")
    return FAMILIES[family].build(config, res)
