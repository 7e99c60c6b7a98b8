"""Chord charts for MMA (Musical MIDI Accompaniment) from lead sheets, with their labels.

A chart is the lead sheet's chord symbols reduced to the 170-class
vocabulary (``model_zoo.vocab``), transposed, on whole beats (quarter
notes). MMA plays exactly the chart's chords, so the chart *is* the label:
:func:`chart_labels` gives its ``.lab`` rows. Symbols the vocabulary cannot
express (``X``) are dropped (the chord before them goes on); ``N.C.``
becomes a rest (``z``), labelled ``N``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from model_zoo import vocab

MMA_LIB = Path("/usr/share/mma/lib/stdlib")
# vocabulary quality -> MMA chord suffix (all accepted by MMA 21.09)
MMA_SUFFIX = {
    "maj": "", "min": "m", "dim": "dim", "aug": "aug", "min6": "m6", "maj6": "6",
    "min7": "m7", "maj7": "M7", "7": "7", "dim7": "dim7", "hdim7": "m7b5",
    "minmaj7": "mM7", "sus2": "sus2", "sus4": "sus4",
}
_DEGREE_NAMES = ("1", "b2", "2", "b3", "3", "4", "b5", "5", "b6", "6", "b7", "7")
_NOT_MAIN = re.compile(r"(intro|end|fill|break)", re.IGNORECASE)


@dataclass(frozen=True)
class ChartChord:
    """One vocabulary chord: root and quality, optional bass pitch class; None root = N."""
    root: int | None
    quality: str = "maj"
    bass: int | None = None

    def harte(self, flats: bool) -> str:
        if self.root is None:
            return "N"
        label = f"{vocab.pitch_name(self.root, flats)}:{self.quality}"
        if self.bass is not None and self.bass != self.root:
            label += "/" + _DEGREE_NAMES[(self.bass - self.root) % 12]
        return label

    def mma(self, flats: bool) -> str:
        if self.root is None:
            return "z"
        name = vocab.pitch_name(self.root, flats) + MMA_SUFFIX[self.quality]
        if self.bass is not None and self.bass != self.root:
            name += "/" + vocab.pitch_name(self.bass, flats)
        return name

    def transposed(self, k: int) -> "ChartChord":
        if self.root is None:
            return self
        return ChartChord((self.root + k) % 12, self.quality,
                          None if self.bass is None else (self.bass + k) % 12)


def to_chart_chord(label: str) -> ChartChord | None:
    """Harte label -> vocabulary chord (bass kept); None when it maps to ``X``."""
    idx = vocab.label_to_index(label)
    if idx == vocab.N_INDEX:
        return ChartChord(None)
    if idx == vocab.X_INDEX:
        return None
    root, quality = vocab.root_quality(idx)
    bass = None
    if "/" in label:
        deg = label.split("/", 1)[1]
        m = re.fullmatch(r"([#b]*)(\d+)", deg)
        if m:
            semis = {1: 0, 2: 2, 3: 4, 4: 5, 5: 7, 6: 9, 7: 11, 9: 2, 11: 5, 13: 9}.get(
                int(m.group(2)))
            if semis is not None:
                bass = (root + semis + m.group(1).count("#") - m.group(1).count("b")) % 12
    return ChartChord(root, quality, bass)


def build_chart(chords, length: float) -> tuple[list[tuple[int, ChartChord]], dict]:
    """``[(beat, chord)]`` on whole beats from ``leadsheet.Chord`` s, and counts.

    Beats are rounded to the nearest quarter; of several symbols on one beat
    the last wins; repeats of a chord are joined; ``N`` fills the start.
    """
    stats = {"symbols": len(chords), "dropped_x": 0, "off_beat": 0}
    on_beat: dict[int, ChartChord] = {}
    for c in chords:
        chord = to_chart_chord(c.label)
        if chord is None:
            stats["dropped_x"] += 1
            continue
        beat = int(math.floor(c.beat + 0.5))
        stats["off_beat"] += abs(beat - c.beat) > 1e-6
        if beat < math.ceil(length):
            on_beat[beat] = chord
    chart: list[tuple[int, ChartChord]] = []
    if not on_beat or min(on_beat) > 0:
        chart.append((0, ChartChord(None)))
    for beat in sorted(on_beat):
        if not chart or chart[-1][1] != on_beat[beat]:
            chart.append((beat, on_beat[beat]))
    return chart, stats


def n_bars(length: float, beats_per_bar: int) -> int:
    return max(1, math.ceil(length / beats_per_bar - 1e-9))


def mma_text(chart, bars: int, beats_per_bar: int, groove: str, tempo: float,
             flats: bool) -> str:
    """The MMA source: header and one line of per-beat tokens per bar."""
    at = dict(chart)
    lines = [f"Tempo {tempo:g}", f"Time {beats_per_bar}", f"Groove {groove}"]
    current = None
    for bar in range(bars):
        tokens = []
        for beat in range(bar * beats_per_bar, (bar + 1) * beats_per_bar):
            chord = at.get(beat)
            if chord is None or chord == current:
                tokens.append("/" if tokens or current is not None else "z")
            else:
                tokens.append(chord.mma(flats))
                current = chord
        lines.append(f"{bar + 1} " + " ".join(tokens))
    return "\n".join(lines) + "\n"


def chart_labels(chart, end_beat: int, seconds_per_beat: float,
                 flats: bool) -> list[tuple[float, float, str]]:
    """``.lab`` rows (seconds) of a chart that ends at ``end_beat``."""
    rows = []
    for i, (beat, chord) in enumerate(chart):
        stop = chart[i + 1][0] if i + 1 < len(chart) else end_beat
        if stop > beat:
            rows.append((beat * seconds_per_beat, stop * seconds_per_beat, chord.harte(flats)))
    return rows


def list_grooves(lib: Path = MMA_LIB) -> dict[str, dict]:
    """``{file stem: {"time": beats per bar, "grooves": [main grooves]}}`` of MMA's library.

    A file's grooves are its ``DefGroove`` names without intros, endings,
    fills and breaks; files without a ``Time`` line or grooves are left out.
    """
    out = {}
    for path in sorted(Path(lib).glob("*.mma")):
        time, grooves = None, []
        for line in path.read_text(errors="replace").splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0].lower() == "time" and time is None \
                    and parts[1].isdigit():
                time = int(parts[1])
            elif len(parts) >= 2 and parts[0].lower() == "defgroove" \
                    and not _NOT_MAIN.search(parts[1]):
                grooves.append(parts[1])
        if time and grooves:
            out[path.stem] = {"time": time, "grooves": grooves}
    return out


def meter_family(time_signatures) -> int:
    """Groove ``Time`` for a lead sheet: 3 for triple metres (3/4, 6/8, 9/8, 3/2), else 4."""
    if not time_signatures:
        return 4
    _, num, den = time_signatures[0]
    quarters = num * 4 / den
    return 3 if num % 3 == 0 and num != 12 or quarters == 3 else 4
