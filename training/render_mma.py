"""Band-style renders of the OpenEWLD lead sheets with MMA and FluidSynth (training data).

For each lead sheet and variant: its chord symbols become a chart of
vocabulary chords on whole beats (``training/mma_chart.py``), transposed by
``k`` in -5..+6; MMA plays the chart in a groove drawn from its library
(drums, bass, comping; the groove's metre matches the song's); the melody is
added on a lead instrument (p 0.75); every channel's level is scaled at
random; FluidSynth renders it with one of four soundfonts, reverb (random
room size) and chorus on or off; the mono mix is scaled to a random peak::

    <out>/<split>/<stem>_<variant>.flac  audio, mono, 22050 Hz, 16 bit
    <out>/<split>/<stem>_<variant>.lab   the chart's chords (Harte), exact by construction
    <out>/<split>/<stem>_<variant>.key   the key (when the sanity check passes)
    <out>/<split>/<stem>_<variant>.json  every choice, the MMA source, counts

The split is by song (``splits.hashed_split`` of the ``AUTHOR/TITLE``
folder, salt ``keychords-openewld-split-v1``: 80/10/10). Choices are seeded
by ``(seed, song, variant)``; finished variants (``.json`` present, written
last) are skipped; every file is written under a temporary name and renamed::

    python training/render_mma.py --out /work/data/mma_render --split validation \\
        --variants 1 --workers 1

Needs ``mma`` and ``fluidsynth`` with the soundfonts
(``shared/data/get_soundfonts.sh``) and ``mido``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from model_zoo import keys as K
from model_zoo.fileio import atomic_write
from training import labels as L
from training import leadsheet, mma_chart
from training.render_pop909 import (MELODY, SF2_DIR, add_render_args, atomic_write_text,
                                    fluidsynth_render, output_root, pick,
                                    render_in_parallel, write_flac)
from training.splits import hashed_split

DEFAULT_OPENEWLD = "/work/shared/data/openewld/dataset"
SALT = "keychords-openewld-split-v1"
SOUNDFONTS = ("FluidR3_GM.sf2", "TimGM6mb.sf2", "A320U.sf2", "sf_GMbank.sf2")
TRANSPOSE_RANGE = (-5, 6)
SLOW = re.compile(r"(ballad|slow|lullaby|hymn|spiritual)", re.IGNORECASE)
MINOR_QUALITIES = ("min", "min6", "min7", "minmaj7")


def songs(root: str | Path) -> dict[str, Path]:
    """``{"AUTHOR/TITLE": path to the .mxl}`` of every lead sheet."""
    root = Path(root)
    return {str(p.parent.relative_to(root)): p for p in sorted(root.glob("*/*/*.mxl"))}


def split_of(song_id: str) -> str:
    return hashed_split(song_id, SALT)


def stem_of(song_id: str) -> str:
    """File-name-safe stem: the title and a short hash of the id."""
    title = re.sub(r"[^A-Za-z0-9]+", "_", song_id.split("/")[-1]).strip("_")[:40]
    return f"{title}_{hashlib.sha1(song_id.encode()).hexdigest()[:6]}"


def choose_variant(song_id: str, variant: int, seed: int, beats_per_bar: int,
                   grooves: dict) -> dict:
    """All random choices of one variant (deterministic)."""
    h = int(hashlib.sha256(song_id.encode()).hexdigest()[:8], 16)
    rng = np.random.default_rng([int(seed), h, int(variant)])
    files = sorted(f for f, g in grooves.items() if g["time"] == beats_per_bar)
    gfile = files[int(rng.integers(len(files)))]
    groove = grooves[gfile]["grooves"][int(rng.integers(len(grooves[gfile]["grooves"])))]
    lo, hi = (60, 92) if SLOW.search(gfile) else (84, 160)
    melody = None
    if rng.random() < 0.75:
        prog, name = pick(rng, MELODY)
        melody = {"program": prog, "name": name, "velocity": int(rng.integers(80, 118))}
    return {
        "groove_file": gfile, "groove": groove, "beats_per_bar": beats_per_bar,
        "tempo": int(rng.integers(lo, hi + 1)),
        "transpose": int(rng.integers(TRANSPOSE_RANGE[0], TRANSPOSE_RANGE[1] + 1)),
        "soundfont": SOUNDFONTS[int(rng.integers(len(SOUNDFONTS)))],
        "melody": melody,
        "channel_gain_seed": int(rng.integers(2**31)),
        "reverb": bool(rng.random() < 0.7),
        "reverb_room": round(float(rng.uniform(0.2, 0.8)), 2),
        "chorus": bool(rng.random() < 0.4),
        "peak_dbfs": round(float(rng.uniform(-14.0, -1.0)), 2),
    }


def song_key(sheet: leadsheet.LeadSheet, chart) -> tuple[str | None, dict]:
    """The key from the first key signature and mode, with a sanity check.

    Without a mode (or with "major"), the relative minor is chosen when the
    last chord is its tonic triad (minor). The key is kept only when its
    tonic is the root of the first or the last chord.
    """
    fifths, mode = (sheet.keys[0][1], sheet.keys[0][2]) if sheet.keys else (0, None)
    chords = [c for _, c in chart if c.root is not None]
    if not chords:
        return None, {"fifths": fifths, "mode": mode, "check": False}
    first, last = chords[0], chords[-1]
    major_tonic = (7 * fifths) % 12
    minor = mode == "minor" or (last.root == (major_tonic + 9) % 12
                                and last.quality in MINOR_QUALITIES)
    key = leadsheet.key_name(fifths, minor)
    tonic = K.tonic_mode(K.parse_key(key))[0]
    ok = tonic in (first.root, last.root)
    return (key if ok else None), {"fifths": fifths, "mode": mode, "check": ok,
                                   "signature_key": key}


def run_mma(source: str, workdir: Path) -> Path:
    """MMA source text -> MIDI file."""
    exe = shutil.which("mma")
    if exe is None:
        raise RuntimeError("mma not found: bash shared/data/get_soundfonts.sh")
    src, mid = workdir / "song.mma", workdir / "song.mid"
    src.write_text(source)
    proc = subprocess.run([exe, str(src), "-f", str(mid)], capture_output=True, text=True,
                          cwd=workdir, check=False)
    if proc.returncode != 0 or not mid.exists():
        raise RuntimeError(f"mma failed: {(proc.stdout + proc.stderr).strip()[-500:]}")
    return mid


def finish_midi(mid_path: Path, notes, choice: dict, k: int) -> None:
    """Add the melody track and scale every channel's volume (in place)."""
    import mido
    mid = mido.MidiFile(str(mid_path))
    rng = np.random.default_rng(choice["channel_gain_seed"])
    used = {m.channel for t in mid.tracks for m in t if hasattr(m, "channel")}
    gains = {ch: float(rng.uniform(0.5, 1.0)) for ch in sorted(used)}
    for track in mid.tracks:
        for i, msg in enumerate(track):
            if msg.type == "control_change" and msg.control == 7:
                track[i] = msg.copy(value=int(round(msg.value * gains[msg.channel])))
    mel = choice["melody"]
    free = [c for c in range(16) if c not in used and c != 9]
    if mel is not None and notes and free:
        ch, tpb = free[0], mid.ticks_per_beat
        events = [(0, mido.Message("program_change", channel=ch, program=mel["program"]))]
        for start, dur, pitch in notes:
            p = pitch + k
            while p < 48:
                p += 12
            while p > 88:
                p -= 12
            on, off = int(round(start * tpb)), int(round((start + dur) * tpb)) - 1
            if off > on:
                events.append((on, mido.Message("note_on", channel=ch, note=p,
                                                velocity=mel["velocity"])))
                events.append((off, mido.Message("note_off", channel=ch, note=p)))
        events.sort(key=lambda e: (e[0], e[1].type == "note_on"))
        track, now = mido.MidiTrack([mido.MetaMessage("track_name", name="Melody")]), 0
        for tick, msg in events:
            track.append(msg.copy(time=tick - now))
            now = tick
        mid.tracks.append(track)
    mid.save(str(mid_path))


def outputs(out_dir: Path, split: str, stem: str) -> dict[str, Path]:
    return {ext: out_dir / split / f"{stem}.{ext}" for ext in ("flac", "lab", "key", "json")}


def render_one(path: str, song_id: str, out_dir: str, variant: int, seed: int,
               sample_rate: int = 22050, grooves: dict | None = None) -> dict:
    """Render one variant of one lead sheet (skipped when its .json exists)."""
    t0 = time.perf_counter()
    split = split_of(song_id)
    stem = f"{stem_of(song_id)}_{variant}"
    paths = outputs(Path(out_dir), split, stem)
    if paths["json"].exists() and paths["flac"].exists():
        return {**json.loads(paths["json"].read_text()), "skipped": True}
    sheet = leadsheet.parse(path)
    chart, counts = mma_chart.build_chart(sheet.chords, sheet.length)
    if all(c.root is None for _, c in chart):
        raise ValueError("no usable chord symbols")
    beats = mma_chart.meter_family(sheet.times)
    choice = choose_variant(song_id, variant, seed, beats, grooves or mma_chart.list_grooves())
    k = choice["transpose"]
    key0, key_info = song_key(sheet, chart)
    key = L.transpose_key(key0, k) if key0 else None
    sig_key = L.transpose_key(key_info["signature_key"], k) if "signature_key" in key_info else None
    flats = L.key_uses_flats(key or sig_key) if (key or sig_key) else True
    moved = [(b, c.transposed(k)) for b, c in chart]
    bars = mma_chart.n_bars(sheet.length, beats)
    source = mma_chart.mma_text(moved, bars, beats, choice["groove"], choice["tempo"], flats)
    spb = 60.0 / choice["tempo"]
    rows = mma_chart.chart_labels(moved, bars * beats, spb, flats)
    with tempfile.TemporaryDirectory(prefix="kc-mma-") as tmp:
        mid = run_mma(source, Path(tmp))
        finish_midi(mid, sheet.notes, choice, k)
        settings = [f"synth.reverb.room-size={choice['reverb_room']}"]
        y = fluidsynth_render(mid, SF2_DIR / choice["soundfont"], sample_rate,
                              choice["reverb"], choice["chorus"], settings=settings)
    peak = float(np.max(np.abs(y))) if y.size else 0.0
    if peak > 0:
        y = y * (10.0 ** (choice["peak_dbfs"] / 20.0) / peak)
    paths["flac"].parent.mkdir(parents=True, exist_ok=True)
    atomic_write(paths["flac"], lambda tmp: write_flac(tmp, y, sample_rate))
    atomic_write_text(paths["lab"], L.format_lab(rows))
    if key:
        atomic_write_text(paths["key"], L.format_key_file(key))
    meta = {"id": song_id, "stem": stem, "variant": variant, "split": split, "seed": seed,
            **choice, "key": key, "key_check": key_info, "bars": bars,
            "labels_end_s": round(bars * beats * spb, 3),
            "duration_s": round(len(y) / sample_rate, 3), "sample_rate": sample_rate,
            "chart_counts": counts, "n_melody_notes": len(sheet.notes),
            "pickup_beats": sheet.pickup, "mma_source": source,
            "timing_s": round(time.perf_counter() - t0, 3)}
    atomic_write_text(paths["json"], json.dumps(meta, indent=1) + "\n")
    return {**meta, "skipped": False}


def write_index(out_dir: Path, split: str) -> dict:
    """``<out>/<split>/index.json``: totals over the finished variants."""
    base = out_dir / split
    metas = [json.loads(p.read_text()) for p in sorted(base.glob("*.json"))
             if p.name != "index.json" and p.with_suffix(".flac").exists()]
    index = {"split": split, "n_files": len(metas), "n_songs": len({m["id"] for m in metas}),
             "n_with_key": sum(bool(m["key"]) for m in metas),
             "hours": round(sum(m["duration_s"] for m in metas) / 3600, 3),
             "stems": [m["stem"] for m in metas]}
    atomic_write_text(base / "index.json", json.dumps(index, indent=1) + "\n")
    return index


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--openewld", default=DEFAULT_OPENEWLD, help="AUTHOR/TITLE/TITLE.mxl root")
    add_render_args(ap)
    args = ap.parse_args(argv)
    out_dir = output_root(ap, args.out)
    todo = {i: p for i, p in songs(args.openewld).items()
            if args.split == "all" or split_of(i) == args.split}
    ids = sorted(todo)[: args.limit]
    jobs = [(i, v) for i in ids for v in range(args.variants)]
    print(f"{len(ids)} songs x {args.variants} variants = {len(jobs)} jobs -> {out_dir}",
          flush=True)
    grooves = mma_chart.list_grooves()
    t0, done, audio = time.perf_counter(), 0, 0.0
    failures: list = []
    splits_seen = set()
    full_jobs = [(str(todo[i]), i, str(out_dir), v, args.seed, args.sample_rate, grooves)
                 for i, v in jobs]
    for n, (_, meta) in enumerate(render_in_parallel(full_jobs, render_one, args.workers,
                                                     failures), 1):
        splits_seen.add(meta["split"])
        if meta["skipped"]:
            continue
        done += 1
        audio += meta["duration_s"]
        print(f"[{n}/{len(jobs)}] {meta['split']}/{meta['stem']} {meta['duration_s']:.0f}s "
              f"{meta['groove']} {meta['tempo']}bpm k={meta['transpose']:+d} "
              f"{meta['soundfont']} key={meta['key']} in {meta['timing_s']:.1f}s", flush=True)
    failed = len(failures)
    wall = time.perf_counter() - t0
    print(f"rendered {done}, failed {failed}, {audio / 3600:.2f} h of audio in {wall:.0f}s wall",
          flush=True)
    for split in sorted(splits_seen):
        idx = write_index(out_dir, split)
        print(f"{split}: {idx['n_files']} files, {idx['n_songs']} songs, "
              f"{idx['n_with_key']} with keys, {idx['hours']} h", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
