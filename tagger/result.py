"""What the analysis of one track produces."""

from __future__ import annotations

from dataclasses import dataclass, field

from model_zoo import keys

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

    @property
    def key_long(self) -> str | None:
        """mir_eval-style key name (``Eb major``), conventional spelling."""
        return None if self.key_index is None else keys.long_key(self.key_index, flats=None)

    def segments_json(self, flats: bool = False) -> list[list]:
        from model_zoo import vocab
        return [[round(s.start, 3), round(s.end, 3), vocab.harte_name(s.index, flats),
                 round(s.confidence, 4)] for s in self.segments]
