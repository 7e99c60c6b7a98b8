"""Lead sheets (MusicXML, ``.mxl``/``.xml``) -> chord symbols, melody and keys in beats.

Only what a band render needs, read with the standard library (no music21):
the first part's measures, in order and without expanding repeats; its
``<harmony>`` chord symbols, melody notes (first voice), ``<key>`` and
``<time>`` changes. Positions are in quarter notes from the start of the
first measure; a pickup (a first measure shorter than its time signature) is
padded at its front to a whole measure.

Chord symbols become Harte labels (:func:`harmony_to_harte`): MusicXML's
``kind`` values map to Harte shorthands, added / altered / subtracted
``<degree>`` elements to Harte degrees, ``<bass>`` to a bass degree.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from model_zoo import keys as K
from model_zoo import vocab

STEPS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
# MusicXML <kind> -> Harte shorthand (None: no chord; "X": no Harte equivalent).
KIND_TO_HARTE = {
    "major": "maj", "minor": "min", "augmented": "aug", "diminished": "dim",
    "dominant": "7", "major-seventh": "maj7", "minor-seventh": "min7",
    "diminished-seventh": "dim7", "augmented-seventh": "aug(b7)",
    "half-diminished": "hdim7", "major-minor": "minmaj7", "major-sixth": "maj6",
    "minor-sixth": "min6", "dominant-ninth": "9", "major-ninth": "maj9",
    "minor-ninth": "min9", "dominant-11th": "11", "major-11th": "maj11",
    "minor-11th": "min11", "dominant-13th": "13", "major-13th": "maj13",
    "minor-13th": "min13", "suspended-second": "sus2", "suspended-fourth": "sus4",
    "power": "5", "none": None,
    # functional / unusual kinds: no Harte shorthand
    "Neapolitan": "X", "Italian": "X", "French": "X", "German": "X", "pedal": "X",
    "Tristan": "X", "other": "X",
}
_DEGREE_NAMES = {0: "1", 1: "b2", 2: "2", 3: "b3", 4: "3", 5: "4", 6: "b5", 7: "5",
                 8: "b6", 9: "6", 10: "b7", 11: "7"}


@dataclass
class Chord:
    beat: float                 # quarter notes from the start
    label: str                  # Harte label as written (``C:9``, ``Bb:min7/b3``, ``N``, ``X``)
    text: str = ""              # the symbol as printed, for the record


@dataclass
class LeadSheet:
    chords: list[Chord]
    notes: list[tuple[float, float, int]]        # (start, duration, MIDI pitch)
    keys: list[tuple[float, int, str | None]]    # (beat, fifths, mode or None)
    times: list[tuple[float, int, int]]          # (beat, numerator, denominator)
    length: float                                # quarter notes, measures summed
    pickup: float = 0.0                          # padding added before a short first bar
    tempo: float | None = None                   # first <sound tempo=...>, if any
    stats: dict = field(default_factory=dict)


def read_xml(path: str | Path) -> ET.Element:
    """The score element of a ``.mxl`` (zip) or plain MusicXML file."""
    path = Path(path)
    if path.suffix.lower() == ".mxl":
        with zipfile.ZipFile(path) as zf:
            # the score is named in META-INF/container.xml, which some files
            # break (an unescaped ' in the name): then the one other .xml file
            names = [n for n in zf.namelist() if not n.startswith("META-INF/")
                     and n.lower().endswith((".xml", ".musicxml"))]
            try:
                container = ET.fromstring(zf.read("META-INF/container.xml"))
                rootfile = next(e for e in container.iter() if e.tag.endswith("rootfile"))
                names.insert(0, rootfile.get("full-path"))
            except (KeyError, ET.ParseError, StopIteration):
                pass
            return ET.fromstring(zf.read(names[0]))
    return ET.parse(path).getroot()


def _pitch_class(step: str, alter) -> int:
    return (STEPS[step.strip().upper()] + int(round(float(alter or 0)))) % 12


def harmony_to_harte(h: ET.Element) -> tuple[str, str]:
    """``(Harte label, printed text)`` of a ``<harmony>`` element."""
    kind_el = h.find("kind")
    kind = (kind_el.text or "").strip() if kind_el is not None else "major"
    text = kind_el.get("text", "") if kind_el is not None else ""
    root_el = h.find("root")
    if KIND_TO_HARTE.get(kind, "X") is None or root_el is None:
        return "N", text or "N.C."
    root = _pitch_class(root_el.findtext("root-step"), root_el.findtext("root-alter"))
    name = vocab.pitch_name(root, flats=True)
    short = KIND_TO_HARTE.get(kind, "X")
    if short == "X":
        return "X", text
    extra = []
    for d in h.findall("degree"):
        value = int(d.findtext("degree-value"))
        alter = int(round(float(d.findtext("degree-alter") or 0)))
        kind_d = (d.findtext("degree-type") or "add").strip()
        acc = "#" * alter if alter > 0 else "b" * -alter
        extra.append(("*" if kind_d == "subtract" else "") + f"{acc}{value}")
        if kind_d == "alter":  # an altered degree replaces the plain one
            extra.append(f"*{value}")
    label = f"{name}:{short}" + (f"({','.join(extra)})" if extra else "")
    bass = h.find("bass")
    if bass is not None:
        bpc = _pitch_class(bass.findtext("bass-step"), bass.findtext("bass-alter"))
        if bpc != root:
            label += "/" + _DEGREE_NAMES[(bpc - root) % 12]
    return label, text


def _duration(el: ET.Element, divisions: int) -> float:
    return float(el.findtext("duration") or 0) / divisions


def _measure_length(time: tuple[int, int]) -> float:
    return time[0] * 4.0 / time[1]


def parse(path: str | Path) -> LeadSheet:
    """Read the first part of a lead sheet (see the module docstring)."""
    score = read_xml(path)
    part = score.find("part")
    divisions, time = 1, (4, 4)
    chords, notes, key_rows, times = [], [], [], []
    start, tempo, pickup = 0.0, None, 0.0
    for i, measure in enumerate(part.findall("measure")):
        for attrs in measure.findall("attributes"):
            divisions = int(attrs.findtext("divisions") or divisions)
            t = attrs.find("time")
            if t is not None and t.findtext("beats"):
                time = (int(t.findtext("beats").split("+")[0]), int(t.findtext("beat-type")))
                times.append((start, *time))
            k = attrs.find("key")
            if k is not None and k.findtext("fifths") is not None:
                key_rows.append((start, int(k.findtext("fifths")), k.findtext("mode")))
        pos, longest, last_onset = 0.0, 0.0, 0.0
        events = []
        for el in measure:
            if el.tag == "harmony":
                off = float(el.findtext("offset") or 0) / divisions
                events.append(("h", pos + off, el))
            elif el.tag == "note":
                if el.find("grace") is not None:
                    continue
                onset = last_onset if el.find("chord") is not None else pos
                dur = _duration(el, divisions)
                voice = el.findtext("voice") or "1"
                if el.find("rest") is None and el.find("pitch") is not None and voice == "1":
                    p = el.find("pitch")
                    midi = 12 * (int(p.findtext("octave")) + 1) + STEPS[p.findtext("step")] \
                        + int(round(float(p.findtext("alter") or 0)))
                    tie_stop = any(t.get("type") == "stop" for t in el.findall("tie"))
                    events.append(("n", onset, (dur, midi, tie_stop)))
                if el.find("chord") is None:
                    last_onset = pos
                    pos += dur
            elif el.tag == "backup":
                pos -= _duration(el, divisions)
            elif el.tag == "forward":
                pos += _duration(el, divisions)
            elif el.tag == "direction" and tempo is None:
                snd = el.find(".//sound")
                if snd is not None and snd.get("tempo"):
                    tempo = float(snd.get("tempo"))
            longest = max(longest, pos)
        full = _measure_length(time)
        length = longest if longest > 0 else full
        if i == 0 and (measure.get("implicit") == "yes" or length < full - 1e-6):
            pickup = full - length
            length = full
        shift = start + (pickup if i == 0 else 0.0)
        for kind, at, payload in events:
            if kind == "h":
                label, text = harmony_to_harte(payload)
                chords.append(Chord(round(shift + at, 6), label, text))
            else:
                dur, midi, tie_stop = payload
                if tie_stop and notes and notes[-1][2] == midi:
                    s0, d0, _ = notes[-1]
                    notes[-1] = (s0, d0 + dur, midi)
                else:
                    notes.append((round(shift + at, 6), dur, midi))
        start += length if i > 0 or pickup == 0 else full
    return LeadSheet(chords=chords, notes=sorted(notes), keys=key_rows, times=times,
                     length=start, pickup=pickup, tempo=tempo)


def key_name(fifths: int, minor: bool) -> str:
    """``(-3, False)`` -> ``Eb major``; ``(-3, True)`` -> ``C minor``."""
    tonic = (7 * fifths) % 12 if not minor else (7 * fifths + 9) % 12
    return K.long_key(K.key_index(tonic, minor))
