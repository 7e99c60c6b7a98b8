"""The progression summary of a track: its chord loop, in names and Roman numerals.

Everything here is a pure function of a track's chord segments
(:class:`tagger.chords.Segment`, :mod:`model_zoo.vocab` indices) and its key
(:mod:`model_zoo.keys` index); only numpy is used.

Finding the loop (:func:`find_loop`)
------------------------------------
1. **Clean.** N and X segments are dropped. With ``simplify=True`` each
   chord is reduced to its major/minor triad
   (:func:`model_zoo.vocab.simplify_majmin`; ``C7`` -> ``C``), and
   consecutive equal chords are merged, adding their durations. Then what a
   re-encoding of the same recording can change is taken out, so the loop
   reflects the chords that dominate and stays the same:

   - *rare chords*: a chord with less than ``RARE_SHARE`` (3 %) of the
     track's chord time is left out, its time given to the chord before it;
   - *blips*: every chord shorter than half the median chord length of this
     track (``BLIP_SHARE``; at least ``min_duration``, 0.3 s) joins its
     longer neighbour, and equal neighbours merge at once: first the blips
     between two equal chords (so a blip inside a chord leaves that chord
     whole, even when the blip is longer than either half), then the rest,
     shortest first. The threshold is
     relative to the track's own harmonic rhythm: a passing chord a quarter
     as long as the others is a detail of one encoding, not part of the loop.
     (When every segment is that short, all are kept.)

   The result is a sequence of chords, each different from the next, with
   durations.
2. **Candidates.** Every window of ``L`` consecutive chords,
   ``min_len <= L <= max_len``, read as a *cycle*, is a candidate if

   - it is *primitive*: not a shorter cycle repeated (``C G C G`` is ``C G``
     twice and is only ever represented by ``C G``);
   - its last chord differs from its first: after merging, a cycle can never
     be followed by itself when it ends on the chord it starts with
     (``C Bb F C`` repeated reads ``C Bb F C Bb F ...``, i.e. the cycle
     ``C Bb F`` with a long ``C``);
   - rotations are the same cycle (``C G Am F`` = ``Am F C G``), so each
     candidate is counted once, and only if at least two windows hold it.
3. **Coverage.** A *run* of a cycle is a maximal stretch of the sequence that
   follows it chord by chord at a fixed phase (``... C G Am F C G Am F C ...``
   is one run of ``C G Am F`` nine chords long). Runs shorter than ``L``
   do not count (they are not a whole occurrence). The cycle's *coverage* is
   the total duration (seconds) of the chords lying in its counted runs.
   A cycle must cover at least ``2 * L`` chords (it occurs at least twice,
   contiguously or not); otherwise it is no loop.
4. **Choice.** The best coverage wins, with a mild preference for short
   loops: every candidate whose coverage is within ``tie_tolerance`` (5 %)
   of the best is a tie, and among ties the shortest cycle wins, then the
   higher coverage, then the one occurring first in the track. (A 4-chord
   loop played 8 times is never beaten by "the 8-chord loop made of it
   twice": that window is not primitive, so it is not a candidate at all.)
5. **Rotation.** The loop is returned starting where it is entered in the
   track: each run votes for the chord it starts on, weighted by its length
   in chords, and the rotation with the most weight wins (ties: the earliest
   run). A verse starting on ``C`` played 4 times outweighs a glitch after
   which the run restarts mid-loop.
6. **No loop.** If no cycle repeats, the result is the (at most four) chords
   with the most total duration, listed in order of first appearance. An
   empty or all-N/X track gives ``[]``.

Roman numerals (:func:`roman_numerals`)
---------------------------------------
Chords are read in root position against the key's tonic; only the interval
of the root above the tonic and the quality matter, so the numerals are the
same in every key (transposition invariant).

- **Degrees.** Major keys: I ii iii IV V vi vii° on intervals
  0 2 4 5 7 9 11. Minor keys use natural minor as reference:
  i ii° III iv v VI VII on 0 2 3 5 7 8 10. The numeral's degree and any
  accidental come from the root; the chord's own quality only sets case and
  suffix, so ``E`` in A minor is ``V`` (the harmonic-minor dominant),
  ``Em`` is ``v``, ``D`` is ``IV`` (Dorian), ``Bm`` is ``ii``.
- **Case.** Upper case for chords with a major third (maj, aug, maj6, maj7, 7)
  and for suspended chords (sus2, sus4, which have no third); lower case
  for chords with a minor third (min, min6, min7, minmaj7, dim, dim7, hdim7).
- **Suffixes.** maj "" (``IV``), min "" (``vi``), dim ``°`` (``vii°``),
  aug ``+`` (``III+``), 7 ``7`` (``V7``), maj7 ``maj7`` (``IVmaj7``),
  min7 ``7`` (``ii7``), minmaj7 ``maj7`` (``imaj7``), dim7 ``°7``
  (``vii°7``), hdim7 ``ø7`` (``viiø7``), maj6 / min6 ``6`` (``IV6``, ``ii6``;
  an *added sixth* in the lead-sheet sense, not a first inversion: these
  numerals never show inversions), sus2 / sus4 ``sus2`` / ``sus4``
  (``Vsus4``).
- **Chromatic roots** (not on the reference scale) get an accidental on a
  neighbouring degree, spelled as musicians usually do:

  - major keys: diminished-family chords (dim, dim7, hdim7) are leading-tone
    chords and take a sharp on the degree below (``#i°7``, ``#ii°7``,
    ``#iv°``, ``#v°7``); on the tritone every minor-third chord does
    (``#iv``, ``#ivø7``); everything else is borrowed and takes a flat on
    the degree above: ``bII bIII bV bVI bVII`` (``Bb`` in C is ``bVII``,
    never ``#VI``);
  - minor keys: ``bII`` (Neapolitan; ``#i°`` for diminished chords),
    ``#III`` (``C#`` in A minor), tritone as in major (``#iv°``, ``bV``),
    ``#VI``/``#vi°`` (the melodic-minor raised sixth) and on the leading
    tone the classical harmonic-minor ``vii°``, ``vii°7``, ``viiø7``
    (other chords there: ``#VII``, ``#vii``). To keep those distinct, a
    diminished chord on the *subtonic* (``G°`` in A minor) is ``bvii°``.
- **One secondary function:** a major or dominant-seventh chord a whole tone
  above the dominant (interval 2: ``D``/``D7`` in C major or in C minor) is
  the dominant of the dominant, written ``V/V`` / ``V7/V``. No other
  secondary function is analysed (``E7`` in C is ``III7``, not ``V7/vi``).
- N and X (never part of a loop from :func:`find_loop`) are written ``N``
  and ``X``.

Search helpers
--------------
:func:`parse_roman` / :func:`parse_chord_names` split query text;
:func:`progression_matches` compares numerals up to rotation,
:func:`chords_match` compares chord names up to rotation *and*
transposition. Both first reduce each side to its cycle the way
:func:`find_loop` does (consecutive duplicates merged, cyclically, and a
repeated pattern reduced to one period), so ``I V vi IV I`` matches
``I V vi IV`` and ``C Bb F C`` matches ``C Bb F``. Matching is exact on
quality: a query ``V7`` does not match a maj/min-simplified loop's ``V``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import numpy as np

from model_zoo import keys, vocab

from .chords import Segment
from .spelling import MINOR_THIRD, chord_names, scale_degree

MIN_SEGMENT_DURATION = 0.3   # seconds; shorter segments are detector blips
BLIP_SHARE = 0.5             # ... and so are those under half the median chord length
RARE_SHARE = 0.03            # chords with less of the track's time are left out
TIE_TOLERANCE = 0.05         # relative coverage difference treated as a tie
FALLBACK_CHORDS = 4          # chords returned when nothing repeats

__all__ = [
    "find_loop", "loop_names", "roman_numeral", "roman_numerals", "summarize",
    "parse_roman", "parse_chord_names", "same_cycle", "chords_match",
    "progression_matches",
]


# --------------------------------------------------------------------------
# Loop finding
# --------------------------------------------------------------------------

def _merged(chords: list[tuple[int, float]]) -> tuple[list[int], list[float]]:
    """Consecutive equal chords merged, their durations added."""
    seq: list[int] = []
    dur: list[float] = []
    for idx, d in chords:
        if seq and seq[-1] == idx:
            dur[-1] += d
        else:
            seq.append(idx)
            dur.append(d)
    return seq, dur


def _absorbed(seq: list[int], dur: list[float], keep: list[bool]) -> list[tuple[int, float]]:
    """The kept chords, each dropped one's time given to the kept chord before it
    (the first kept one, for those at the start)."""
    out: list[tuple[int, float]] = []
    lead = 0.0
    for c, d, k in zip(seq, dur, keep):
        if k:
            out.append((c, d + lead))
            lead = 0.0
        elif out:
            out[-1] = (out[-1][0], out[-1][1] + d)
        else:
            lead += d
    return out


def _clean(segments: Sequence[Segment], simplify: bool,
           min_duration: float) -> tuple[list[int], list[float]]:
    """The track's chord sequence as the loop is read from it: rooted, optionally
    simplified, without rare chords and blips, with merged repeats (module
    docstring, step 1)."""
    rooted = [(vocab.simplify_majmin(int(s.index)) if simplify else int(s.index),
               max(float(s.end - s.start), 0.0))
              for s in segments if 0 <= int(s.index) < vocab.N_INDEX]
    seq, dur = _merged(rooted)
    if not seq:
        return seq, dur
    total: dict[int, float] = {}
    for c, d in zip(seq, dur):
        total[c] = total.get(c, 0.0) + d
    common = [total[c] >= RARE_SHARE * sum(dur) for c in seq]
    if any(common):
        seq, dur = _merged(_absorbed(seq, dur, common))
    shortest = max(min_duration, BLIP_SHARE * float(np.median(dur)))
    if max(dur) < shortest:          # only short segments: keep them all
        return seq, dur
    return _without_blips(seq, dur, shortest)


def _without_blips(seq: list[int], dur: list[float],
                   shortest: float) -> tuple[list[int], list[float]]:
    """Each chord under ``shortest`` joins its longer neighbour: first those
    between two equal chords (a blip inside a chord leaves that chord whole),
    then the rest, shortest first."""
    while len(seq) > 1:
        short = [i for i, d in enumerate(dur) if d < shortest]
        if not short:
            break
        inside = [i for i in short if 0 < i < len(seq) - 1 and seq[i - 1] == seq[i + 1]]
        i = min(inside or short, key=lambda k: dur[k])
        left = dur[i - 1] if i > 0 else -1.0
        right = dur[i + 1] if i + 1 < len(seq) else -1.0
        dur[i - 1 if left >= right else i + 1] += dur[i]
        seq, dur = _merged(list(zip(seq[:i] + seq[i + 1:], dur[:i] + dur[i + 1:])))
    return seq, dur


def _is_primitive(cyc: Sequence) -> bool:
    """True unless ``cyc`` is a shorter cycle repeated (``A B A B``)."""
    n = len(cyc)
    for p in range(1, n):
        if n % p == 0 and all(cyc[i] == cyc[i % p] for i in range(n)):
            return False
    return True


def _canonical(cyc: Sequence) -> tuple:
    """Lexicographically smallest rotation: one key per cycle."""
    n = len(cyc)
    return min(tuple(cyc[i:]) + tuple(cyc[:i]) for i in range(n))


def _runs(seq: np.ndarray, cyc: tuple) -> list[tuple[int, int, int]]:
    """Maximal runs following ``cyc`` at a fixed phase, at least ``len(cyc)`` long.

    Returns ``(start, length, phase)`` with ``phase`` the index into ``cyc``
    of the run's first chord.
    """
    n, L = len(seq), len(cyc)
    pos = np.arange(n)
    offsets = np.arange(L)
    pattern = np.asarray(cyc)[(pos[None, :] - offsets[:, None]) % L]   # (L, n)
    match = pattern == seq[None, :]
    padded = np.zeros((L, n + 2), dtype=np.int8)
    padded[:, 1:-1] = match
    edges = np.diff(padded, axis=1)
    out = []
    for o in range(L):
        starts = np.flatnonzero(edges[o] == 1)
        ends = np.flatnonzero(edges[o] == -1)
        for s, e in zip(starts, ends):
            if e - s >= L:
                out.append((int(s), int(e - s), int((s - o) % L)))
    return out


def _fallback(seq: list[int], dur: list[float], k: int = FALLBACK_CHORDS) -> list[int]:
    total: dict[int, float] = {}
    first: dict[int, int] = {}
    for i, (c, d) in enumerate(zip(seq, dur)):
        total[c] = total.get(c, 0.0) + d
        first.setdefault(c, i)
    top = sorted(total, key=lambda c: (-total[c], first[c]))[:k]
    return sorted(top, key=lambda c: first[c])


def find_loop(segments: Sequence[Segment], min_len: int = 2, max_len: int = 8,
              simplify: bool = True, *, min_duration: float = MIN_SEGMENT_DURATION,
              tie_tolerance: float = TIE_TOLERANCE) -> list[int]:
    """The chord loop that best describes the track, as vocabulary indices.

    See the module docstring for the exact rule: the primitive cycle of
    ``min_len``..``max_len`` chords whose repetitions cover the most of the
    track's time (shorter loops win near-ties), starting where the track
    enters it; the most prominent chords (up to 4) when nothing repeats.
    """
    seq, dur = _clean(segments, simplify, min_duration)
    if not seq:
        return []
    min_len = max(2, int(min_len))
    max_len = int(max_len)
    n = len(seq)

    # Candidate cycles (by canonical rotation) held by at least two windows.
    counts: dict[tuple, int] = {}
    first: dict[tuple, int] = {}
    for L in range(min_len, min(max_len, n) + 1):
        for i in range(n - L + 1):
            w = seq[i:i + L]
            if w[0] == w[-1]:
                continue
            key = _canonical(w)
            counts[key] = counts.get(key, 0) + 1
            first.setdefault(key, i)
    cands = [c for c, k in counts.items() if k >= 2 and _is_primitive(c)]
    if not cands:
        return _fallback(seq, dur)

    seq_a = np.asarray(seq, dtype=np.int64)
    dur_a = np.asarray(dur, dtype=np.float64)
    scored = []   # (coverage, len, first position, cycle, runs)
    for cyc in cands:
        L = len(cyc)
        runs = _runs(seq_a, cyc)
        covered = np.zeros(n, dtype=bool)
        for s, length, _ in runs:
            covered[s:s + length] = True
        if int(covered.sum()) < 2 * L:
            continue
        scored.append((float(dur_a[covered].sum()), L, first[cyc], cyc, runs))
    if not scored:
        return _fallback(seq, dur)

    best_cov = max(s[0] for s in scored)
    ties = [s for s in scored if s[0] >= best_cov * (1.0 - tie_tolerance)]
    cov, L, _, cyc, runs = min(ties, key=lambda s: (s[1], -s[0], s[2]))

    # Rotation: where the runs enter the cycle, weighted by run length.
    weight: dict[int, int] = {}
    earliest: dict[int, int] = {}
    for s, length, phase in runs:
        weight[phase] = weight.get(phase, 0) + length
        earliest[phase] = min(earliest.get(phase, s), s)
    phase = min(weight, key=lambda p: (-weight[p], earliest[p]))
    return [int(c) for c in cyc[phase:] + cyc[:phase]]


def loop_names(loop: Sequence[int], flats: bool | None = False,
               key_idx: int | None = None) -> str:
    """Lead-sheet names of a loop, space separated: ``"Am F C G"``
    (spelling: :mod:`tagger.spelling`)."""
    return chord_names(loop, key_idx, flats)


# --------------------------------------------------------------------------
# Roman numerals
# --------------------------------------------------------------------------

_ROMAN = ("I", "II", "III", "IV", "V", "VI", "VII")

_SUFFIX = {
    "maj": "", "min": "", "dim": "°", "aug": "+", "min6": "6", "maj6": "6",
    "min7": "7", "maj7": "maj7", "7": "7", "dim7": "°7", "hdim7": "ø7",
    "minmaj7": "maj7", "sus2": "sus2", "sus4": "sus4",
}


def roman_numeral(chord: int, key_idx: int) -> str:
    """Roman numeral of one vocabulary chord in key ``key_idx`` (see module doc)."""
    rq = vocab.root_quality(int(chord))
    if rq is None:
        return vocab.LABELS[int(chord)]
    root, quality = rq
    tonic, minor = keys.tonic_mode(int(key_idx))
    interval = (root - tonic) % 12
    if interval == 2 and quality in ("maj", "7"):
        return "V/V" if quality == "maj" else "V7/V"
    acc, deg = scale_degree(interval, quality, minor)
    numeral = _ROMAN[deg]
    if quality in MINOR_THIRD:
        numeral = numeral.lower()
    return acc + numeral + _SUFFIX[quality]


def roman_numerals(loop: Sequence[int], key_idx: int) -> list[str]:
    """Roman numerals of a loop's chords against key ``key_idx``."""
    return [roman_numeral(c, key_idx) for c in loop]


def summarize(segments: Sequence[Segment], key_idx: int | None,
              flats: bool | None = False, simplify: bool = True) -> tuple[str, str]:
    """``(chords, progression)`` strings for a track: ``("Am F C G", "i VI III VII")``.

    ``progression`` is empty when the key is unknown; ``flats=None`` spells
    the chords in the key's own spelling (:mod:`tagger.spelling`).
    """
    loop = find_loop(segments, simplify=simplify)
    chords = loop_names(loop, flats, key_idx)
    prog = "" if key_idx is None else " ".join(roman_numerals(loop, key_idx))
    return chords, prog


# --------------------------------------------------------------------------
# Search helpers
# --------------------------------------------------------------------------

_ROMAN_SPLIT = re.compile(r"[\s,;|\-–—‐→>]+")
_ROMAN_TOKEN = re.compile(r"^([#b]?)([ivIV]+)(.*)$")
_ROMAN_SUFFIX = {
    "o": "°", "dim": "°", "o7": "°7", "dim7": "°7", "ø": "ø7", "m7b5": "ø7",
    "aug": "+", "M7": "maj7", "Δ": "maj7", "Δ7": "maj7", "ma7": "maj7",
}


def _normalise_numeral(tok: str) -> str:
    tok = tok.replace("♭", "b").replace("♯", "#").replace("º", "°").replace("Ø", "ø")
    parts = tok.split("/")
    out = []
    for part in parts:
        m = _ROMAN_TOKEN.match(part)
        if m:
            acc, num, suf = m.groups()
            part = acc + num + _ROMAN_SUFFIX.get(suf, suf)
        out.append(part)
    return "/".join(out)


def parse_roman(text: str) -> list[str]:
    """Split a Roman-numeral progression: ``"I-V-vi-IV"``, ``"I V vi IV"``, ``"I – V"``.

    Spaces, commas, bars, dashes and arrows separate numerals; ``♭``/``♯``
    become ``b``/``#``, and ``o``/``dim``, ``o7``, ``m7b5``/``ø``, ``aug``
    and ``M7``/``Δ`` become ``°``, ``°7``, ``ø7``, ``+`` and ``maj7``.
    Case is kept (``I`` and ``i`` differ).
    """
    return [_normalise_numeral(t) for t in _ROMAN_SPLIT.split(text.strip()) if t]


_CHORD_SPLIT = re.compile(r"[\s,;|–—→>]+|-(?=[A-G])")


def parse_chord_names(text: str) -> list[str]:
    """Split chord-name query text: ``"Am F C G"``, ``"Am-F-C-G"``, ``"Am, F"``.

    A dash directly followed by a note letter separates; other dashes stay
    part of the name (``C-`` is C minor).
    """
    return [t for t in _CHORD_SPLIT.split(text.strip()) if t]


def same_cycle(a: Sequence, b: Sequence) -> bool:
    """True when ``a`` and ``b`` are the same sequence up to rotation."""
    a, b = list(a), list(b)
    if len(a) != len(b):
        return False
    if not a:
        return True
    return any(b == a[i:] + a[:i] for i in range(len(a)))


def _reduce_cycle(seq: Sequence) -> list:
    """A sequence as the loop :func:`find_loop` would report for it repeated.

    Consecutive duplicates merged (also across the wrap-around) and a
    repeated pattern reduced to one period.
    """
    out: list = []
    for x in seq:
        if not out or out[-1] != x:
            out.append(x)
    while len(out) > 1 and out[-1] == out[0]:
        out.pop()
    n = len(out)
    for p in range(1, n):
        if n % p == 0 and all(out[i] == out[i % p] for i in range(n)):
            return out[:p]
    return out


def progression_matches(query_roman: Sequence[str] | str,
                        track_roman: Sequence[str] | str) -> bool:
    """Roman numerals equal up to rotation (``I V vi IV`` ~ ``vi IV I V``).

    Numerals are relative to each track's own key, so this is key
    independent. Strings are split with :func:`parse_roman`. An empty
    query or track never matches.
    """
    q = parse_roman(query_roman) if isinstance(query_roman, str) else \
        [_normalise_numeral(x) for x in query_roman]
    t = parse_roman(track_roman) if isinstance(track_roman, str) else \
        [_normalise_numeral(x) for x in track_roman]
    q, t = _reduce_cycle(q), _reduce_cycle(t)
    return bool(q) and bool(t) and same_cycle(q, t)


def _interval_pattern(chords: Sequence[int]) -> list[tuple[int, int]]:
    """Roots relative to the first chord, with qualities."""
    r0 = chords[0] // vocab.N_QUALITIES
    return [((c // vocab.N_QUALITIES - r0) % 12, c % vocab.N_QUALITIES) for c in chords]


def _parse_rooted(names: Sequence[str]) -> list[int]:
    idx = [vocab.parse_chord_name(n) for n in names]
    if any(i >= vocab.N_INDEX for i in idx):
        raise ValueError(f"not a rooted chord in {list(names)!r}")
    return idx


def chords_match(query_names: Sequence[str] | str,
                 loop_names: Sequence[str] | str) -> bool:
    """Chord names equal up to rotation *and* transposition.

    ``Am F C G`` matches ``Em C G D`` (transposed) and ``C G Am F``
    (rotated), not ``Am F C E``. Names are parsed with
    :func:`model_zoo.vocab.parse_chord_name`; an unparsable query raises
    ``ValueError``, an unparsable (or N/X) loop simply does not match.
    Strings are split with :func:`parse_chord_names`.
    """
    if isinstance(query_names, str):
        query_names = parse_chord_names(query_names)
    if isinstance(loop_names, str):
        loop_names = parse_chord_names(loop_names)
    q = _reduce_cycle(_parse_rooted(query_names))
    try:
        t = _reduce_cycle(_parse_rooted(loop_names))
    except ValueError:
        return False
    if not q or not t or len(q) != len(t):
        return False
    qp = _interval_pattern(q)
    return any(_interval_pattern(t[i:] + t[:i]) == qp for i in range(len(t)))


# --------------------------------------------------------------------------
# Queries: one meaning for beets' ``progression:``/``chords:`` and
# ``keychords search --progression/--chords``
# --------------------------------------------------------------------------

_NUMERAL = re.compile(r"^[#b]?[ivIV]+")


def _substring(pattern: str, value: str) -> bool:
    return pattern.lower() in value.lower()


def _chord_index(name: str) -> int:
    """Vocabulary index of a chord name; X for anything unreadable."""
    try:
        return vocab.parse_chord_name(name)
    except ValueError:
        return vocab.X_INDEX


def progression_query(pattern: str) -> Callable[[str], bool]:
    """A matcher for stored Roman-numeral loops (``progression`` values).

    Two or more numerals: the loop equals the query up to rotation (and
    repetition: ``I V I V`` is ``I V``), in any key. One numeral: the loop
    contains it. Anything that is not numerals: a case-insensitive
    substring match, as beets does for other fields. Empty values never match.
    """
    tokens = parse_roman(pattern)
    numerals = tokens if tokens and all(
        all(_NUMERAL.match(p) for p in t.split("/")) for t in tokens) else None

    def match(value: str) -> bool:
        if not value or not isinstance(value, str):
            return False
        if numerals is None:
            return _substring(pattern, value)
        if len(numerals) == 1:
            return numerals[0] in parse_roman(value)
        return progression_matches(numerals, value)
    return match


def chords_query(pattern: str) -> Callable[[str], bool]:
    """A matcher for stored chord loops (``chords`` values).

    Two or more chord names: the loop equals the query up to rotation and
    transposition (``Am F C G`` matches ``Em C G D`` and ``C G Am F``). One
    chord name: the loop contains that chord (``Bb`` and ``A#`` are the
    same). Anything else: a case-insensitive substring match.
    """
    names = parse_chord_names(pattern)
    indices = [_chord_index(n) for n in names]
    rooted = bool(names) and all(i < vocab.N_INDEX for i in indices)

    def match(value: str) -> bool:
        if not value or not isinstance(value, str):
            return False
        if not rooted:
            return _substring(pattern, value)
        if len(names) == 1:
            return indices[0] in {_chord_index(n) for n in parse_chord_names(value)}
        return chords_match(names, value)
    return match
