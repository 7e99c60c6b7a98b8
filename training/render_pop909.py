"""Render POP909 to labelled audio with FluidSynth (training data; not shipped).

For each song and variant: the MIDI's three tracks (MELODY, BRIDGE, PIANO)
get randomly chosen General MIDI programs and mix levels, the low notes of
the PIANO track optionally move to a bass instrument, all notes are
optionally transposed by ``k`` in -5..+6 semitones, and the result is
rendered by the ``fluidsynth`` CLI with one of two soundfonts, down-mixed to
mono, scaled to a random peak level and written as 16-bit FLAC::

    <out>/<split>/<id>_<variant>.flac   audio, mono, --sample-rate Hz
    <out>/<split>/<id>_<variant>.lab    chords (mir_eval .lab, Harte, transposed)
    <out>/<split>/<id>_<variant>.key    majority key, e.g. "Ab major" (transposed);
                                        with --labels cl, then "start end key" lines
    <out>/<split>/<id>_<variant>.json   every random choice, timings, sources

Every choice comes from a generator seeded by ``(seed, song id, variant)``,
so a variant renders the same whatever the order, ``--limit`` or
``--workers``. Finished variants (all four files present) are skipped; each
file is written to a temporary name and renamed, the FLAC last but one and
the JSON last, so an interrupted run leaves no half-written outputs.

Usage::

    python training/render_pop909.py --out /work/data/pop909_render \\
        --split validation --variants 1 --seed 0 --workers 2
    python training/render_pop909.py --out ... --split train --limit 60 \\
        --check-alignment 5

``--labels cl`` takes the chords and key changes from POP909-CL
(``training/pop909_cl.py``) instead of POP909's own files; songs whose CL
labels cannot be aligned with the MIDI keep POP909's (``"labels"`` in the
JSON says which).

Needs ``fluidsynth`` and the soundfonts (``shared/data/get_soundfonts.sh``)
and ``mido`` (training-only dependency).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from model_zoo.fileio import atomic_write
from training import labels as L
from training.splits import SPLITS, ids_in_split, song_ids, split_of

DEFAULT_POP909 = "/work/shared/data/pop909"
DEFAULT_CL = "/work/shared/data/pop909-cl"
SF2_DIR = Path("/usr/share/sounds/sf2")
SOUNDFONTS = {"FluidR3_GM": ("FluidR3_GM.sf2", 0.6), "TimGM6mb": ("TimGM6mb.sf2", 0.4)}

# (GM program 0-based, name, weight). Plausible arrangements of a pop song.
ACCOMPANIMENT = [
    (0, "Acoustic Grand Piano", 5.0), (1, "Bright Acoustic Piano", 1.0),
    (2, "Electric Grand Piano", 0.7), (4, "Electric Piano 1", 2.0),
    (5, "Electric Piano 2", 1.0), (24, "Acoustic Guitar (nylon)", 1.5),
    (25, "Acoustic Guitar (steel)", 1.5), (26, "Electric Guitar (jazz)", 0.8),
    (27, "Electric Guitar (clean)", 1.0), (16, "Drawbar Organ", 0.5),
    (19, "Church Organ", 0.2), (46, "Orchestral Harp", 0.5),
    (48, "String Ensemble 1", 1.0), (49, "String Ensemble 2", 0.5),
    (50, "Synth Strings 1", 0.5), (88, "Pad 1 (new age)", 0.5),
    (89, "Pad 2 (warm)", 0.5), (90, "Pad 3 (polysynth)", 0.3),
]
BRIDGE = [
    (0, "Acoustic Grand Piano", 2.0), (4, "Electric Piano 1", 1.0),
    (11, "Vibraphone", 0.7), (8, "Celesta", 0.3), (24, "Acoustic Guitar (nylon)", 1.0),
    (27, "Electric Guitar (clean)", 0.8), (48, "String Ensemble 1", 1.5),
    (40, "Violin", 0.7), (42, "Cello", 0.5), (73, "Flute", 1.0), (71, "Clarinet", 0.6),
    (68, "Oboe", 0.4), (60, "French Horn", 0.4), (89, "Pad 2 (warm)", 0.6),
    (16, "Drawbar Organ", 0.3), (52, "Choir Aahs", 0.5),
]
MELODY = [
    (73, "Flute", 1.5), (75, "Pan Flute", 0.5), (65, "Alto Sax", 1.0),
    (66, "Tenor Sax", 0.6), (64, "Soprano Sax", 0.5), (40, "Violin", 1.2),
    (71, "Clarinet", 0.8), (68, "Oboe", 0.6), (56, "Trumpet", 0.6),
    (80, "Lead 1 (square)", 0.6), (81, "Lead 2 (sawtooth)", 0.6),
    (52, "Choir Aahs", 0.5), (53, "Voice Oohs", 0.8), (54, "Synth Voice", 0.4),
    (0, "Acoustic Grand Piano", 1.0), (4, "Electric Piano 1", 0.6),
    (22, "Harmonica", 0.4), (26, "Electric Guitar (jazz)", 0.5),
]
BASS = [
    (32, "Acoustic Bass", 1.0), (33, "Electric Bass (finger)", 1.5),
    (34, "Electric Bass (pick)", 0.7), (35, "Fretless Bass", 0.7),
    (38, "Synth Bass 1", 0.5),
]
TRACK_CHOICES = {"MELODY": MELODY, "BRIDGE": BRIDGE, "PIANO": ACCOMPANIMENT}
VOLUME_RANGE = {"MELODY": (85, 120), "BRIDGE": (55, 100), "PIANO": (75, 115), "BASS": (80, 110)}
BASS_CHANNEL = 3
TRANSPOSE_RANGE = (-5, 6)   # inclusive
BASS_SPLIT_PROB = 0.5       # chance the PIANO track's low notes go to a bass
BASS_SPLIT_PITCH = 48       # C3: (transposed) notes below it move to the bass
PEAK_DBFS_RANGE = (-14.0, -1.0)


def pick(rng: np.random.Generator, table):
    w = np.array([t[2] for t in table], dtype=np.float64)
    i = int(rng.choice(len(table), p=w / w.sum()))
    return table[i][0], table[i][1]


def choose_variant(song_id: str, variant: int, seed: int, transpose: bool = True) -> dict:
    """All random choices of one rendered variant (deterministic)."""
    rng = np.random.default_rng([int(seed), int(song_id), int(variant)])
    names = list(SOUNDFONTS)
    p = np.array([SOUNDFONTS[n][1] for n in names])
    sf = names[int(rng.choice(len(names), p=p / p.sum()))]
    k = int(rng.integers(TRANSPOSE_RANGE[0], TRANSPOSE_RANGE[1] + 1))
    programs = {}
    for track, table in TRACK_CHOICES.items():
        prog, name = pick(rng, table)
        programs[track] = {"program": prog, "name": name,
                           "volume": int(rng.integers(*VOLUME_RANGE[track], endpoint=True))}
    bass = None
    if rng.random() < BASS_SPLIT_PROB:
        prog, name = pick(rng, BASS)
        bass = {"program": prog, "name": name, "below": BASS_SPLIT_PITCH,
                "volume": int(rng.integers(*VOLUME_RANGE["BASS"], endpoint=True))}
    return {
        "soundfont": sf,
        "transpose": k if transpose else 0,
        "programs": programs,
        "bass": bass,
        "reverb": bool(rng.random() < 0.7),
        "chorus": bool(rng.random() < 0.5),
        "peak_dbfs": round(float(rng.uniform(*PEAK_DBFS_RANGE)), 2),
    }


def _shift_note(note: int, k: int) -> int:
    n = note + k
    while n < 0:
        n += 12
    while n > 127:
        n -= 12
    return n


def rewrite_midi(src: str | Path, dst: str | Path, choice: dict) -> None:
    """Write ``src`` with the variant's programs, volumes, bass split and transposition."""
    import mido
    mid = mido.MidiFile(str(src))
    out = mido.MidiFile(type=mid.type, ticks_per_beat=mid.ticks_per_beat)
    k = choice["transpose"]
    bass = choice["bass"]
    for track in mid.tracks:
        new = mido.MidiTrack()
        spec = choice["programs"].get(track.name)
        channels = {m.channel for m in track if hasattr(m, "channel")}
        split = bass is not None and track.name == "PIANO"
        for msg in track:
            if msg.type == "program_change" and spec is not None:
                new.append(msg.copy(program=spec["program"]))
                new.append(mido.Message("control_change", channel=msg.channel, control=7,
                                        value=spec["volume"], time=0))
                if split:
                    new.append(mido.Message("program_change", channel=BASS_CHANNEL,
                                            program=bass["program"], time=0))
                    new.append(mido.Message("control_change", channel=BASS_CHANNEL,
                                            control=7, value=bass["volume"], time=0))
                continue
            if msg.type in ("note_on", "note_off") and msg.channel != 9:
                note = _shift_note(msg.note, k)
                ch = BASS_CHANNEL if split and note < bass["below"] else msg.channel
                new.append(msg.copy(note=note, channel=ch))
                continue
            new.append(msg)
        if spec is not None and not any(m.type == "program_change" for m in track):
            for ch in sorted(channels):  # no program change in the file: add one
                new.insert(0, mido.Message("program_change", channel=ch,
                                           program=spec["program"], time=0))
        out.tracks.append(new)
    out.save(str(dst))


def fluidsynth_render(midi: Path, sf2: Path, sample_rate: int, reverb: bool,
                      chorus: bool, gain: float = 0.2, settings=()) -> np.ndarray:
    """Render ``midi`` to a mono float32 array (fluidsynth's float raw output)."""
    exe = shutil.which("fluidsynth")
    if exe is None:
        raise RuntimeError("fluidsynth not found: bash shared/data/get_soundfonts.sh")
    with tempfile.TemporaryDirectory(prefix="kc-render-") as tmp:
        raw = Path(tmp) / "out.raw"
        cmd = [exe, "-ni", "-q", "-F", str(raw), "-T", "raw", "-O", "float", "-E", "little",
               "-r", str(sample_rate), "-g", str(gain), "-R", "1" if reverb else "0",
               "-C", "1" if chorus else "0", "-o", "synth.cpu-cores=1",
               *[arg for item in settings for arg in ("-o", item)],
               str(sf2), str(midi)]
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
        if proc.returncode != 0 or not raw.exists():
            raise RuntimeError(f"fluidsynth failed ({proc.returncode}): {proc.stderr.strip()[:500]}")
        data = np.fromfile(raw, dtype="<f4")
    if data.size % 2:
        data = data[:-1]
    return data.reshape(-1, 2).mean(axis=1).astype(np.float32)


def write_flac(path: str | Path, y: np.ndarray, sample_rate: int) -> None:
    """Mono float audio in [-1, 1] -> 16-bit FLAC (PyAV)."""
    import av
    pcm = np.clip(np.round(y * 32767.0), -32768, 32767).astype(np.int16)
    with av.open(str(path), "w", format="flac") as container:
        stream = container.add_stream("flac", rate=sample_rate, layout="mono")
        stream.format = "s16"
        block = 1 << 16
        for i in range(0, len(pcm), block):
            frame = av.AudioFrame.from_ndarray(pcm[None, i:i + block], format="s16",
                                               layout="mono")
            frame.sample_rate = sample_rate
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def outputs(out_dir: Path, split: str, stem: str) -> dict[str, Path]:
    base = out_dir / split
    return {ext: base / f"{stem}.{ext}" for ext in ("flac", "lab", "key", "json")}


def song_labels(pop909: Path, song_id: str, k: int, cl: str | None = None) -> dict:
    """Chords, key and key segments of one song, transposed by ``k``.

    From POP909's files, or from POP909-CL when ``cl`` is its folder and the
    song's CL labels align (then with timed key segments).
    """
    song = pop909 / song_id
    aligned = None
    if cl is not None:
        from training.pop909_cl import song_labels as cl_labels
        aligned = cl_labels(pop909, cl, song_id)
    if aligned is not None and aligned["alignment"]["ok"] and aligned["keys"]:
        chord_rows, key_rows = aligned["chords"], aligned["keys"]
        source = "pop909-cl"
    else:
        chord_rows, key_rows = L.read_segments(song / "chord_midi.txt"), None
        source = "pop909" if cl is None else "pop909 (CL not aligned)"
    key0, key_frac, n_keys = L.majority_key(key_rows or L.read_segments(song / "key_audio.txt"))
    key = L.transpose_key(key0, k)
    flats = L.key_uses_flats(key)
    return {
        "chords": [(s, e, L.transpose_label(lab, k, flats=flats)) for s, e, lab in chord_rows],
        "key": key, "key_original": key0, "key_fraction": round(key_frac, 4), "n_keys": n_keys,
        "key_segments": [(s, e, L.transpose_key(name, k)) for s, e, name in key_rows or ()],
        "labels": source,
        "cl_alignment": aligned["alignment"] if aligned is not None else None,
    }


def render_one(pop909: str, out_dir: str, song_id: str, variant: int, seed: int,
               sample_rate: int = 22050, transpose: bool = True, cl: str | None = None) -> dict:
    """Render one variant (skipped when already complete). Returns its metadata."""
    t0 = time.perf_counter()
    pop909, out_dir = Path(pop909), Path(out_dir)
    split = split_of(song_id)
    stem = f"{song_id}_{variant}"
    paths = outputs(out_dir, split, stem)
    if all(p.exists() for p in paths.values()):
        meta = json.loads(paths["json"].read_text())
        meta["skipped"] = True
        return meta
    paths["flac"].parent.mkdir(parents=True, exist_ok=True)
    song = pop909 / song_id
    choice = choose_variant(song_id, variant, seed, transpose)
    k = choice["transpose"]

    labels = song_labels(pop909, song_id, k, cl)
    chords = labels["chords"]

    with tempfile.TemporaryDirectory(prefix="kc-midi-") as tmp:
        midi = Path(tmp) / f"{stem}.mid"
        rewrite_midi(song / f"{song_id}.mid", midi, choice)
        t1 = time.perf_counter()
        sf2 = SF2_DIR / SOUNDFONTS[choice["soundfont"]][0]
        y = fluidsynth_render(midi, sf2, sample_rate, choice["reverb"], choice["chorus"])
    t2 = time.perf_counter()
    peak = float(np.max(np.abs(y))) if y.size else 0.0
    if peak > 0:
        y = y * (10.0 ** (choice["peak_dbfs"] / 20.0) / peak)
    atomic_write(paths["flac"], lambda tmp: write_flac(tmp, y, sample_rate))
    t3 = time.perf_counter()

    meta = {
        "id": song_id, "variant": variant, "split": split, "stem": stem, "seed": seed,
        **choice,
        **{name: labels[name] for name in ("key", "key_original", "key_fraction", "n_keys",
                                          "key_segments", "labels", "cl_alignment")},
        "sample_rate": sample_rate, "channels": 1,
        "duration_s": round(len(y) / sample_rate, 3),
        "first_chord_s": next((s for s, _, lab in chords if lab != "N"), None),
        "last_label_end_s": chords[-1][1] if chords else None,
        "timing_s": {"midi": round(t1 - t0, 3), "fluidsynth": round(t2 - t1, 3),
                     "encode": round(t3 - t2, 3)},
        "sources": ({"midi": f"{song_id}/{song_id}.mid", "chords": f"{song_id}/chord_midi.txt",
                     "key": f"{song_id}/key_audio.txt"} if labels["labels"] != "pop909-cl" else
                    {"midi": f"{song_id}/{song_id}.mid", "labels": f"pop909-cl/midi/{song_id}.mid",
                     "beats": f"{song_id}/beat_midi.txt"}),
    }
    atomic_write_text(paths["lab"], L.format_lab(chords))
    atomic_write_text(paths["key"], L.format_key_file(labels["key"], labels["key_segments"]))
    meta["timing_s"]["total"] = round(time.perf_counter() - t0, 3)
    atomic_write_text(paths["json"], json.dumps(meta, indent=1) + "\n")
    meta["skipped"] = False
    return meta


# --------------------------------------------------------------------- checks

def midi_note_onsets(path: str | Path, track_name: str | None = None) -> np.ndarray:
    """Note-on times (seconds, tempo map applied) of a MIDI file or one named track."""
    import mido
    mid = mido.MidiFile(str(path))
    if track_name is not None:
        idx = [i for i, t in enumerate(mid.tracks) if t.name == track_name]
        keep = mido.MidiFile(type=mid.type, ticks_per_beat=mid.ticks_per_beat)
        # keep the tempo track(s) so the tempo map still applies
        keep.tracks = [t for i, t in enumerate(mid.tracks)
                       if i in idx or not any(hasattr(m, "note") for m in t)]
        mid = keep
    now, onsets = 0.0, []
    for msg in mid:  # merged tracks; msg.time = seconds since the previous message
        now += msg.time
        if msg.type == "note_on" and msg.velocity > 0:
            onsets.append(now)
    return np.array(onsets)


def check_alignment(pop909: str | Path, flac: str | Path, lab: str | Path | None = None) -> dict:
    """Compare chord onsets, MIDI note onsets and the rendered audio of one variant.

    * ``chord_to_note_ms``: for each chord change (not N) in the ``.lab``, the
      distance to the nearest MIDI note onset (median and 90th percentile);
      ``chords_within_50ms``: the fraction closer than 50 ms.
    * ``first_chord_minus_first_note_ms``: first non-N chord start minus the
      first MIDI note onset (accompaniment track and any track).
    * ``audio_start_minus_first_note_ms``: where the rendered audio first
      rises above -40 dB of its peak (10 ms frames) minus the first onset.
    * ``onset_lag_ms``: the lag (within +-300 ms) that best correlates the
      audio's onset-strength envelope with the chord-change times; near
      zero (or a few tens of ms, attacks) when labels and audio line up;
      ``note_onset_lag_ms``: the same against all MIDI note onsets (robust
      when the accompaniment is a slow-attack pad or strings).
    """
    import librosa

    from tagger.decode import load_audio
    flac = Path(flac)
    lab = Path(lab) if lab else flac.with_suffix(".lab")
    song_id = flac.stem.split("_")[0]
    midi = Path(pop909) / song_id / f"{song_id}.mid"
    onsets = midi_note_onsets(midi)
    piano = midi_note_onsets(midi, "PIANO")
    segs = L.read_segments(lab)
    changes = np.array([s for i, (s, _, lab_) in enumerate(segs)
                        if lab_ != "N" and (i == 0 or segs[i - 1][2] != lab_)])
    dist = np.min(np.abs(changes[:, None] - onsets[None, :]), axis=1)
    first_chord = changes[0]
    sr = 22050
    y = load_audio(flac, sr)
    hop = 220
    rms = librosa.feature.rms(y=y, frame_length=2 * hop, hop_length=hop, center=False)[0]
    db = 20 * np.log10(np.maximum(rms, 1e-10) / max(rms.max(), 1e-10))
    audio_start = float(np.argmax(db > -40) * hop / sr)
    env_hop = 128
    env = librosa.onset.onset_strength(y=y, sr=sr, hop_length=env_hop)
    env = (env - env.mean()) / (env.std() + 1e-9)
    fr = sr / env_hop
    lags = np.arange(-int(0.3 * fr), int(0.3 * fr) + 1)

    def lag_scores(times):
        idx = np.round(np.asarray(times) * fr).astype(int)
        out = []
        for lag in lags:
            j = idx + lag
            j = j[(j >= 0) & (j < len(env))]
            out.append(env[j].mean() if len(j) else -np.inf)
        return np.array(out)

    score = lag_scores(changes)
    best = int(lags[int(np.argmax(score))])
    note_best = int(lags[int(np.argmax(lag_scores(np.unique(np.round(onsets, 3)))))])
    return {
        "stem": flac.stem,
        "n_chord_changes": len(changes),
        "chord_to_note_ms_median": round(float(np.median(dist)) * 1000, 2),
        "chord_to_note_ms_p90": round(float(np.percentile(dist, 90)) * 1000, 2),
        "chords_within_50ms": round(float(np.mean(dist < 0.05)), 4),
        "first_chord_minus_first_note_ms": round(float(first_chord - onsets.min()) * 1000, 2),
        "first_chord_minus_first_piano_note_ms": round(float(first_chord - piano.min()) * 1000, 2),
        "audio_start_minus_first_note_ms": round((audio_start - float(onsets.min())) * 1000, 2),
        "onset_lag_ms": round(best / fr * 1000, 2),
        "note_onset_lag_ms": round(note_best / fr * 1000, 2),
        "onset_score_at_lag": round(float(np.max(score)), 3),
        "onset_score_at_zero": round(float(score[int(np.flatnonzero(lags == 0)[0])]), 3),
    }


# ------------------------------------------------------------------------ CLI

def write_index(out_dir: Path, split: str) -> dict:
    """``<out>/<split>/index.json``: totals over the finished variants of a split."""
    base = out_dir / split
    metas = []
    for js in sorted(base.glob("*.json")):
        if js.name == "index.json":
            continue
        stem = js.stem
        if all((base / f"{stem}.{e}").exists() for e in ("flac", "lab", "key")):
            metas.append(json.loads(js.read_text()))
    index = {
        "split": split,
        "n_files": len(metas),
        "n_songs": len({m["id"] for m in metas}),
        "hours": round(sum(m["duration_s"] for m in metas) / 3600, 3),
        "bytes": sum((base / f"{m['stem']}.flac").stat().st_size for m in metas),
        "stems": [m["stem"] for m in metas],
    }
    atomic_write_text(base / "index.json", json.dumps(index, indent=1) + "\n")
    return index


def render_in_parallel(jobs: list, render, workers: int, failed: list) -> Iterator[tuple]:
    """``(job, metadata)`` of each job ``render(*job)`` finishes in ``workers``
    processes, as they finish; a job that raises is printed as one FAILED line,
    added to ``failed`` and skipped (the rest go on)."""
    with ProcessPoolExecutor(max_workers=max(1, workers)) as pool:
        futs = {pool.submit(render, *job): job for job in jobs}
        for fut in as_completed(futs):
            try:
                yield futs[fut], fut.result()
            except Exception as e:  # noqa: BLE001 -- keep going; report at the end
                failed.append(futs[fut])
                print(f"FAILED {futs[fut]}: {e}", file=sys.stderr, flush=True)


def add_render_args(ap: argparse.ArgumentParser) -> None:
    """The options every renderer shares (output, split, variants, workers)."""
    ap.add_argument("--out", required=True, help="output root (outside the repository)")
    ap.add_argument("--split", choices=SPLITS + ("all",), default="validation")
    ap.add_argument("--limit", type=int, default=None, help="first N songs of the split")
    ap.add_argument("--variants", type=int, default=1, help="variants per song (0..V-1)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--sample-rate", type=int, default=22050)


def output_root(ap: argparse.ArgumentParser, out: str) -> Path:
    """``--out``, refused inside the repository (audio is never committed)."""
    out_dir = Path(out)
    if out_dir.resolve().is_relative_to(Path(__file__).resolve().parent.parent):
        ap.error("--out must be outside the repository (audio is never committed)")
    return out_dir


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pop909", default=DEFAULT_POP909, help="POP909 root (NNN/ folders)")
    add_render_args(ap)
    ap.add_argument("--ids", nargs="*", help="only these song ids (still in their own split)")
    ap.add_argument("--no-transpose", action="store_true", help="keep the original keys")
    ap.add_argument("--labels", choices=("pop909", "cl"), default="pop909",
                    help="chord/key labels: POP909's own or POP909-CL's corrected ones")
    ap.add_argument("--cl", default=DEFAULT_CL, help="POP909-CL root (midi/NNN.mid)")
    ap.add_argument("--check-alignment", type=int, default=0, metavar="K",
                    help="after rendering, check label/audio alignment on K variants")
    args = ap.parse_args(argv)

    out_dir = output_root(ap, args.out)
    all_ids = song_ids(args.pop909)
    if args.ids:
        from training.splits import normalize_id
        ids = [normalize_id(i) for i in args.ids]
        if args.split != "all":
            ids = [i for i in ids if split_of(i) == args.split]
    else:
        ids = all_ids if args.split == "all" else ids_in_split(all_ids, args.split)
    if args.limit is not None:
        ids = ids[: args.limit]
    jobs = [(sid, v) for sid in ids for v in range(args.variants)]
    print(f"{len(ids)} songs x {args.variants} variants = {len(jobs)} jobs -> {out_dir}",
          flush=True)

    t0 = time.perf_counter()
    done = skipped = 0
    failed: list = []
    rendered_seconds = audio_seconds = 0.0
    results = []
    cl = args.cl if args.labels == "cl" else None
    full_jobs = [(args.pop909, str(out_dir), sid, v, args.seed, args.sample_rate,
                  not args.no_transpose, cl) for sid, v in jobs]
    for _, meta in render_in_parallel(full_jobs, render_one, args.workers, failed):
        results.append(meta)
        if meta.get("skipped"):
            skipped += 1
            continue
        done += 1
        rendered_seconds += meta["timing_s"]["total"]
        audio_seconds += meta["duration_s"]
        print(f"[{done + skipped}/{len(jobs)}] {meta['split']}/{meta['stem']} "
              f"{meta['duration_s']:.0f}s k={meta['transpose']:+d} {meta['soundfont']} "
              f"{meta['programs']['PIANO']['name']} / {meta['programs']['MELODY']['name']}"
              f"{' +bass' if meta['bass'] else ''} in {meta['timing_s']['total']:.1f}s",
              flush=True)
    failed = len(failed)
    wall = time.perf_counter() - t0
    print(f"rendered {done}, skipped {skipped}, failed {failed} in {wall:.0f}s wall"
          + (f"; {rendered_seconds / done:.2f}s per variant (one worker), "
             f"{audio_seconds / 3600:.2f} h of audio" if done else ""), flush=True)
    splits = sorted({m["split"] for m in results})
    for split in splits:
        idx = write_index(out_dir, split)
        print(f"{split}: {idx['n_files']} files, {idx['n_songs']} songs, {idx['hours']} h, "
              f"{idx['bytes'] / 1e6:.0f} MB", flush=True)
    if args.check_alignment:
        checks = []
        for meta in sorted(results, key=lambda m: m["stem"])[: args.check_alignment]:
            p = outputs(out_dir, meta["split"], meta["stem"])
            checks.append(check_alignment(args.pop909, p["flac"], p["lab"]))
            print(json.dumps(checks[-1]), flush=True)
        if checks:
            atomic_write_text(out_dir / f"alignment_check_{args.split}.json",
                               json.dumps(checks, indent=1) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
