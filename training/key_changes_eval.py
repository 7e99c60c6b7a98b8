"""Tune and score the timed key track on POP909-CL renders (expert key changes).

Each song's POP909-CL MIDI (``shared/data/pop909-cl/midi/NNN.mid``) is
rendered without its chord-label track by FluidSynth (piano, FluidR3_GM);
its ``key_signature`` events, timed by the MIDI's tempo map, are the
reference key track. The key model's window posteriors are cached per song
(``<cache>/<id>.npz``), so a sweep of the switch penalty costs no analysis.

Scores (per split, per ``p_self``):

- modulating songs (two or more reference keys): duration-weighted MIREX
  key score (mir_eval weights: same 1, fifth 0.5, relative 0.3, parallel
  0.2) of the timed track and of the single global key;
- non-modulating songs: share with no reported change;
- key-change boundary F-measure at +-4 s over all songs.

Usage::

    python training/key_changes_eval.py --split validation --cache /tmp/kc-cl \\
        --p-self 0.9 0.99 0.999 0.9999 0.99999 1e-6   # (1e-6 read as 1 - 1e-6)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from model_zoo import keys  # noqa: E402
from tagger import keytrack  # noqa: E402
from training.render_pop909 import SF2_DIR, fluidsynth_render  # noqa: E402
from training.splits import ids_in_split  # noqa: E402

DEFAULT_CL = "/work/shared/data/pop909-cl"
TOLERANCE_S = 4.0


def reference_keys(midi_path: Path) -> tuple[list[tuple[float, int]], float]:
    """``([(time s, key index)], duration s)`` from a MIDI's key signatures."""
    import mido
    mid = mido.MidiFile(str(midi_path))
    t, events = 0.0, []
    for msg in mid:  # merged tracks, times in seconds
        t += msg.time
        if msg.type == "key_signature":
            idx = keys.parse_key(msg.key)
            if not events or events[-1][1] != idx:
                events.append((t, idx))
    return events, t


def render_score(midi_path: Path, sample_rate: int) -> np.ndarray:
    """The score track (chord-label track dropped) rendered to mono audio."""
    import mido
    mid = mido.MidiFile(str(midi_path))
    mid.tracks = [tr for tr in mid.tracks if tr.name.strip().lower() != "chords"]
    with tempfile.TemporaryDirectory(prefix="kc-keys-") as tmp:
        path = Path(tmp) / "score.mid"
        mid.save(str(path))
        y = fluidsynth_render(path, SF2_DIR / "FluidR3_GM.sf2", sample_rate, True, False)
    return (0.5 * y / max(1e-6, float(np.abs(y).max()))).astype(np.float32)


def cached_windows(song: str, cl: Path, cache: Path, analyzer) -> dict:
    """Window centres and posteriors of one song (computed once)."""
    path = cache / f"{song}.npz"
    if not path.exists():
        y = render_score(cl / "midi" / f"{song}.mid", analyzer.sample_rate)
        r = analyzer.analyse_audio(song, y)
        np.savez(path, centres=np.asarray(r.key_window_centres),
                 probs=np.asarray(r.key_window_probs), duration=r.duration,
                 global_probs=np.asarray(r.key_probs))
    d = np.load(path)
    return {k: d[k] for k in d.files}


def reference_regions(events, end: float) -> list[tuple[float, float, int]]:
    out = []
    for i, (t, k) in enumerate(events):
        stop = events[i + 1][0] if i + 1 < len(events) else end
        if stop > t:
            out.append((t, stop, k))
    return out


def weighted_mirex(ref: list[tuple[float, float, int]], est_at) -> float:
    """Duration-weighted MIREX score of an estimate (``est_at(t) -> key``) on 0.5 s steps."""
    import mir_eval
    total = score = 0.0
    for start, stop, k in ref:
        for t in np.arange(start, stop, 0.5):
            score += mir_eval.key.weighted_score(keys.long_key(k), keys.long_key(est_at(t)))
            total += 1
    return score / max(total, 1)


def boundary_counts(ref_b: list[float], est_b: list[float], tol: float) -> tuple[int, int, int]:
    """``(hits, n_ref, n_est)``: one-to-one matches within ``tol`` seconds."""
    used, hits = set(), 0
    for b in ref_b:
        cands = [j for j, e in enumerate(est_b) if j not in used and abs(e - b) <= tol]
        if cands:
            used.add(min(cands, key=lambda j: abs(est_b[j] - b)))
            hits += 1
    return hits, len(ref_b), len(est_b)


def score(songs: dict, p_self: float) -> dict:
    mod_timed, mod_global, stable, hits, n_ref, n_est = [], [], [], 0, 0, 0
    for song, (events, win) in songs.items():
        end = float(win["duration"])
        ref = reference_regions(events, end)
        regions = keytrack.key_regions(win["probs"], win["centres"], end, p_self)
        main = (keytrack.main_key(regions) if len({r.key for r in regions}) > 1
                else int(win["global_probs"].argmax()))
        if len({k for _, _, k in ref}) > 1:
            mod_timed.append(weighted_mirex(ref, lambda t: keytrack.key_at(regions, t, main)))
            mod_global.append(weighted_mirex(ref, lambda t: main))
        else:
            stable.append(len({r.key for r in regions}) == 1)
        h, nr, ne = boundary_counts([s for s, _, _ in ref[1:]], [r.start for r in regions[1:]],
                                    TOLERANCE_S)
        hits, n_ref, n_est = hits + h, n_ref + nr, n_est + ne
    p = hits / n_est if n_est else 0.0
    r = hits / n_ref if n_ref else 0.0
    return {"p_self": p_self, "modulating": len(mod_timed), "non_modulating": len(stable),
            "mirex_timed": float(np.mean(mod_timed)) if mod_timed else None,
            "mirex_global": float(np.mean(mod_global)) if mod_global else None,
            "no_change_share": float(np.mean(stable)) if stable else None,
            "boundary_p": p, "boundary_r": r,
            "boundary_f": 2 * p * r / (p + r) if p + r else 0.0}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cl", default=DEFAULT_CL)
    ap.add_argument("--split", default="validation", choices=("validation", "test"))
    ap.add_argument("--cache", required=True, help="folder for the per-song window posteriors")
    ap.add_argument("--limit", type=int, default=0, help="first N songs of the split")
    ap.add_argument("--p-self", type=float, nargs="+", default=[keytrack.P_SELF],
                    help="values to score (below 0.5: read as 1 - value)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", help="write the scores as JSON here")
    args = ap.parse_args(argv)
    from tagger.engine import Analyzer
    cl, cache = Path(args.cl), Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    ids = ids_in_split(sorted(p.stem for p in (cl / "midi").glob("*.mid")), args.split)
    if args.limit:
        ids = ids[: args.limit]
    analyzer = Analyzer(device="cpu", with_chords=False, num_threads=args.threads)
    songs = {}
    for i, song in enumerate(ids):
        events, _ = reference_keys(cl / "midi" / f"{song}.mid")
        songs[song] = (events, cached_windows(song, cl, cache, analyzer))
        print(f"\r{i + 1}/{len(ids)} songs", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    results = [score(songs, p if p >= 0.5 else 1 - p) for p in args.p_self]
    for res in results:
        print(json.dumps(res))
    if args.out:
        Path(args.out).write_text(json.dumps({"split": args.split, "songs": len(ids),
                                              "results": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
