"""What `describe` returns, for a torch module (zoo.introspect) and for a graph file
(zoo.graphs) alike. No torch here: describing a graph needs none."""

from __future__ import annotations

from dataclasses import dataclass, field

from gmtrace.core.schema import arch_row


@dataclass
class Architecture:
    """The 15 hyperparameters of one network, plus extra targets. A value the source
    cannot show is `schema.UNKNOWN`; `notes` says why."""

    values: dict[str, float | str]
    extra: dict[str, object] = field(default_factory=dict)
    traced: bool = False
    notes: list[str] = field(default_factory=list)

    def __getitem__(self, name: str) -> float | str:
        return self.values[name]

    def row(self):
        """Raw row of 15 (discrete fields as class indices, unknown as NaN)."""
        return arch_row(self.values)

    def to_json(self) -> dict:
        return {
            "values": self.values,
            "extra": self.extra,
            "traced": self.traced,
            "notes": self.notes,
        }
