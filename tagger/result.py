"""What the analysis of one track produces."""

from __future__ import annotations

from dataclasses import dataclass, field

from model_zoo import keys

from . import keytrack, spelling
from .chords import Segment


@dataclass
class TrackResult:
    path: str
    duration: float = 0.0                        # seconds
    key_index: int | None = None                 # model_zoo.keys order
    key_confidence: float = 0.0                  # posterior of the chosen key
    key_probs: list[float] | None = None         # 24 posteriors, keys order
    segments: list[Segment] = field(default_factory=list)
    chords: str = ""                             # progression loop: "Am F C G"
    progression: str = ""                        # same in Roman numerals: "vi IV I V"
    models: dict[str, str] = field(default_factory=dict)   # {"chord": id, "key": id}
    key_regions: list[keytrack.KeyRegion] = field(default_factory=list)  # timed key track
    tuning: float | None = None                  # reference tuning, cents vs A440
    # The key model's windows behind key_regions: centres (s) and posteriors (n, 24).
    key_window_centres: list[float] = field(default_factory=list, repr=False)
    key_window_probs: list[list[float]] = field(default_factory=list, repr=False)

    @property
    def key_changes(self) -> int:
        return max(0, len(self.key_regions) - 1)

    def key_at(self, t: float) -> int | None:
        """The key at time ``t`` (the timed key track, else the track's key)."""
        return keytrack.key_at(self.key_regions, t, self.key_index)

    def chord_label(self, index: int, t: float, flats: bool | None = None,
                    harte: bool = True) -> str:
        """A chord at time ``t`` spelled in the key there (``flats`` forces a style)."""
        name = spelling.harte_label if harte else spelling.chord_name
        return name(index, self.key_at(t), flats)

    def timed_labels(self, flats: bool | None = None) -> list[tuple[float, float, str]]:
        """``(start, end, Harte label)`` of every chord segment."""
        return [(s.start, s.end, self.chord_label(s.index, (s.start + s.end) / 2, flats))
                for s in self.segments]

    def key_regions_json(self, flats: bool | None = None) -> list[list]:
        """``[[start, end, "Eb major", confidence], ...]``."""
        return [[round(r.start, 3), round(r.end, 3), keys.long_key(r.key, flats),
                 round(r.confidence, 4)] for r in self.key_regions]

    @property
    def key_long(self) -> str | None:
        """mir_eval-style key name (``Eb major``), conventional spelling."""
        return None if self.key_index is None else keys.long_key(self.key_index, flats=None)

    def segments_json(self, flats: bool | None = None) -> list[list]:
        return [[round(s.start, 3), round(s.end, 3), label, round(s.confidence, 4)]
                for s, (_, _, label) in zip(self.segments, self.timed_labels(flats))]
