"""POP909-CL: expert-corrected chords and key changes on POP909's own clock.

``shared/data/pop909-cl/midi/NNN.mid`` (see its README) holds the corrected
labels on a quantized beat grid: track 0 has ``key_signature`` events (key
changes), track 2 ("chords") the chords as notes (one chord = the notes that
start on one tick; the lowest is the bass), track 1 the score. Its beats are
POP909's beats (``beat_midi.txt``) up to a constant offset, a whole beat or
a fraction of one, which differs between songs. :func:`align` finds it by
matching the score's note onsets with the original MIDI's, and
:func:`song_labels` turns the CL labels into seconds on the original MIDI's
clock, the clock of every POP909 render.

Chords become Harte labels (:func:`chord_label`): the root is the one whose
intervals form a vocabulary quality (``model_zoo.vocab.QUALITY_INTERVALS``),
the bass when it can be, with the bass as a degree (``Db:maj7/7``); sets that
fit no quality (single notes, dyads, clusters) are written as intervals over
the bass (``C:(b3)``), which the vocabulary maps to ``X``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from model_zoo import vocab

DEFAULT_CL = "/work/shared/data/pop909-cl"
DEGREES = ("1", "b2", "2", "b3", "3", "4", "b5", "5", "b6", "6", "b7", "7")
# Offsets tried by align(), in beats (1/24 beat steps, the CL quantization).
OFFSET_RANGE = 16.0
OFFSET_STEP = 1.0 / 24
MATCH_TOLERANCE_S = 0.05
MIN_MATCHED = 0.9  # alignments matching fewer CL onsets are not trusted


@dataclass
class CLSong:
    """One POP909-CL file, times in beats."""
    chords: list[tuple[float, float, str]]   # (start, end, Harte label); gaps are no chord
    keys: list[tuple[float, str]]            # (start, "Gb major"); in force until the next
    onsets: np.ndarray                       # score note onsets
    end: float                               # last note end
    stats: dict = field(default_factory=dict)


def chord_label(notes) -> str:
    """Harte label of MIDI note numbers sounding together (lowest = bass)."""
    notes = sorted(notes)
    bass = notes[0] % 12
    pcs = {n % 12 for n in notes}
    candidates = [bass] + sorted(pcs - {bass})
    for root in candidates:  # the bass first: Bb Db F Ab is Bb:min7, not Db:maj6/6
        for quality in vocab.QUALITIES:
            if {(p - root) % 12 for p in pcs} == set(vocab.QUALITY_INTERVALS[quality]):
                name = f"{vocab.pitch_name(root, flats=True)}:{quality}"
                return name if root == bass else f"{name}/{DEGREES[(bass - root) % 12]}"
    rest = sorted((p - bass) % 12 for p in pcs - {bass})
    return f"{vocab.pitch_name(bass, flats=True)}:({','.join(DEGREES[i] for i in rest)})" \
        if rest else f"{vocab.pitch_name(bass, flats=True)}:(1)"


def key_from_midi(name: str) -> str:
    """mido's key signature name (``Gb``, ``Ebm``) -> ``Gb major`` / ``Eb minor``."""
    return f"{name[:-1]} minor" if name.endswith("m") else f"{name} major"


def _notes(track, tpb: int):
    """``[(start, end, note)]`` in beats of one track."""
    now, open_, out = 0, {}, []
    for msg in track:
        now += msg.time
        if msg.type == "note_on" and msg.velocity > 0:
            open_.setdefault(msg.note, []).append(now)
        elif msg.type in ("note_off", "note_on") and open_.get(msg.note):
            out.append((open_[msg.note].pop(0) / tpb, now / tpb, msg.note))
    return sorted(out)


def _tracks(mid):
    """``(chords, score)`` tracks (None where absent): named "chords" / "piano",
    else tracks 2 and 1 (one file has no chord track, one no score)."""
    names = [t.name.strip().lower() for t in mid.tracks]
    chords = names.index("chords") if "chords" in names else 2
    score = names.index("piano") if "piano" in names else 1
    if score == chords:
        score = None
    pick = lambda i: mid.tracks[i] if i is not None and i < len(mid.tracks) else None  # noqa: E731
    return pick(chords), pick(score)


def read_cl(path: str | Path) -> CLSong:
    """Chords, key changes and score onsets of one POP909-CL MIDI file."""
    import mido
    mid = mido.MidiFile(str(path))
    tpb = mid.ticks_per_beat
    chord_track, score_track = _tracks(mid)
    keys, now = [], 0
    for msg in mid.tracks[0]:
        now += msg.time
        if msg.type == "key_signature":
            keys.append((now / tpb, key_from_midi(msg.key)))
    groups: dict[float, list] = {}
    for start, end, note in _notes(chord_track or [], tpb):
        groups.setdefault(start, []).append((end, note))
    starts = sorted(groups)
    chords = []
    for i, s in enumerate(starts):
        end = max(e for e, _ in groups[s])
        if i + 1 < len(starts):
            end = min(end, starts[i + 1])
        chords.append((s, end, chord_label([n for _, n in groups[s]])))
    score = _notes(score_track, tpb) if score_track is not None else []
    onsets = [s for s, _, _ in score] or starts  # no score: align on the chords
    if not onsets:
        raise ValueError(f"{path}: no chords and no score")
    return CLSong(chords=chords, keys=keys, onsets=np.array(onsets),
                  end=max([e for _, e, _ in score] + [c[1] for c in chords] + [0.0]))


def beats_to_seconds(beats, grid: np.ndarray) -> np.ndarray:
    """Beat positions -> seconds on a beat grid (beat i at ``grid[i]``), linear beyond it."""
    b = np.asarray(beats, dtype=np.float64)
    idx = np.arange(len(grid))
    t = np.interp(b, idx, grid)
    lo, hi = b < 0, b > len(grid) - 1
    t[lo] = grid[0] + b[lo] * (grid[1] - grid[0])
    t[hi] = grid[-1] + (b[hi] - (len(grid) - 1)) * (grid[-1] - grid[-2])
    return t


def _matched(times: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Distance of each time to the nearest of the sorted ``ref`` times."""
    j = np.clip(np.searchsorted(ref, times), 1, len(ref) - 1)
    return np.minimum(np.abs(times - ref[j - 1]), np.abs(times - ref[j]))


def align(onsets_beats: np.ndarray, grid: np.ndarray, ref_onsets: np.ndarray) -> dict:
    """The beat offset that best maps CL's onsets onto the original MIDI's.

    Returns ``{"offset": beats, "matched": fraction within 50 ms,
    "median_ms": ...}``; CL beat ``b`` lies at POP909 beat ``b + offset``.
    """
    ref = np.sort(np.asarray(ref_onsets, dtype=np.float64))

    def best_of(offsets):
        scored = []
        for off in offsets:
            d = _matched(beats_to_seconds(onsets_beats + off, grid), ref)
            scored.append(((float(np.mean(d < MATCH_TOLERANCE_S)), -float(np.median(d))), off))
        return max(scored, key=lambda x: x[0])
    # quarter beats first, then CL's 1/24-beat steps around the best
    _, coarse = best_of(np.arange(-OFFSET_RANGE, OFFSET_RANGE + 1e-9, 0.25))
    (matched, neg_median), off = best_of(coarse + np.arange(-6, 7) * OFFSET_STEP)
    return {"offset": round(float(off), 4), "matched": round(matched, 4),
            "median_ms": round(-neg_median * 1000, 2)}


def song_labels(pop909: str | Path, cl: str | Path, song_id: str) -> dict:
    """CL chords (``[(start, end, label)]``, N in the gaps) and keys in POP909 seconds.

    ``{"chords", "keys": [(start, end, key)], "alignment": align()'s dict + "ok"}``;
    ``ok`` is False when fewer than :data:`MIN_MATCHED` of the onsets match.
    """
    from training.render_pop909 import midi_note_onsets
    song = read_cl(Path(cl) / "midi" / f"{song_id}.mid")
    folder = Path(pop909) / song_id
    grid = np.loadtxt(folder / "beat_midi.txt", ndmin=2)[:, 0]
    al = align(song.onsets, grid, midi_note_onsets(folder / f"{song_id}.mid"))
    al["ok"] = bool(song.chords) and al["matched"] >= MIN_MATCHED

    def sec(b):
        return round(float(beats_to_seconds([b + al["offset"]], grid)[0]), 6)
    chords, now = [], 0.0
    for s, e, lab in song.chords:
        s, e = max(0.0, sec(s)), sec(e)  # a chord before the MIDI's time 0 is cut there
        if e <= s:
            continue
        if s > now + 1e-6:
            chords.append((now, s, "N"))
        chords.append((s, e, lab))
        now = e
    end = max(now, sec(song.end))
    key_rows = song.keys or []
    keys = [(0.0 if i == 0 else sec(b), sec(key_rows[i + 1][0]) if i + 1 < len(key_rows) else end,
             k) for i, (b, k) in enumerate(key_rows)]
    return {"chords": chords, "keys": [k for k in keys if k[1] > k[0]], "alignment": al}
