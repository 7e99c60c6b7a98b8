"""The text chart ``keychords show`` prints: key, key regions, tuning, loop,
then the timed chords (each spelled in the key at its time)."""

from __future__ import annotations

from model_zoo import keys

from .functions import harmonic_function
from .result import TrackResult


def fmt_time(t: float) -> str:
    return f"{int(t // 60)}:{t % 60:04.1f}"


def tuning_text(cents: float | None) -> str:
    """``+12 cents (A = 443.1 Hz)``; ``-`` when unknown."""
    if cents is None:
        return "-"
    return f"{int(round(cents)):+d} cents (A = {440.0 * 2 ** (cents / 1200):.1f} Hz)"


def _header(r: TrackResult, tag: str | None, flats: bool | None) -> list[str]:
    lines = [f"  duration     {fmt_time(r.duration)}"]
    if r.key_index is not None:
        lines.append(f"  key          {keys.long_key(r.key_index, flats)}  "
                     f"(confidence {r.key_confidence:.2f}; tag {tag})")
        lines.append(f"  key changes  {r.key_changes}")
    lines.append(f"  tuning       {tuning_text(r.tuning)}")
    lines.append(f"  chords       {r.chords or '-'}")
    lines.append(f"  progression  {r.progression or '-'}")
    lines.append(f"  models       {', '.join(f'{k}: {v}' for k, v in r.models.items())}")
    return lines


def _table(header: str, rows: list[str]) -> list[str]:
    """A blank line, ``header`` and ``rows``; nothing when there are no rows."""
    return ["", header, *rows] if rows else []


def _regions(r: TrackResult, flats: bool | None) -> list[str]:
    return _table("  from     to       key              confidence",
                  [f"  {fmt_time(g.start):>7}  {fmt_time(g.end):>7}  "
                   f"{keys.long_key(g.key, flats):<16} {g.confidence:.2f}"
                   for g in r.key_regions or ()])


def _segment_row(r: TrackResult, s, flats: bool | None) -> str:
    mid = (s.start + s.end) / 2
    name = r.chord_label(s.index, mid, flats, harte=False)
    name = {"N": "N.C.", "X": "?"}.get(name, name)
    bar = "#" * round(s.confidence * 10)
    func = harmonic_function(s.index, r.key_at(mid))
    return (f"  {fmt_time(s.start):>7}  {name:<8} {bar:<10} {s.confidence:.2f}  "
            f"{'' if func == 'none' else func}").rstrip()


def _segments(r: TrackResult, flats: bool | None) -> list[str]:
    return _table("  time     chord    confidence       function",
                  [_segment_row(r, s, flats) for s in r.segments or ()])


def chart_lines(r: TrackResult, tag: str | None, flats: bool | None = None) -> list[str]:
    """Every line of the chart (the first is the file name)."""
    return [str(r.path)] + _header(r, tag, flats) + _regions(r, flats) + _segments(r, flats)
