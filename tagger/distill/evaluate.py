"""Evaluation: mir_eval chord and key scores, teacher agreement, inference speed.

Chord scores follow MIREX practice: each track's estimate (frame posteriors
-> the tagger's Viterbi decoding, ``tagger.chords.DecodeSettings()``) is
compared with its ``.lab`` by mir_eval's comparison functions over the
merged intervals; scores are pooled over tracks weighted by duration
(weighted chord symbol recall). Keys: mir_eval's MIREX weighted score
(1 correct, 0.5 fifth, 0.3 relative, 0.2 parallel), averaged over tracks.
"""

from __future__ import annotations

import time
from functools import lru_cache

import numpy as np
import torch

from model_zoo import keys, vocab

CHORD_METRICS = ("root", "thirds", "triads", "sevenths", "tetrads", "majmin", "mirex")


# -- chords ------------------------------------------------------------------------

def compare_chords(ref_intervals, ref_labels, est_intervals, est_labels) -> dict:
    """Per-metric ``(correct duration, scored duration)`` for one track."""
    from mir_eval import chord, util
    ref_intervals = np.asarray(ref_intervals, float)
    est_intervals, est_labels = util.adjust_intervals(
        np.asarray(est_intervals, float), list(est_labels), ref_intervals.min(),
        ref_intervals.max(), chord.NO_CHORD, chord.NO_CHORD)
    merged, ref_l, est_l = util.merge_labeled_intervals(ref_intervals, list(ref_labels),
                                                       est_intervals, est_labels)
    dur = util.intervals_to_durations(merged)
    out = {}
    for name in CHORD_METRICS:
        comp = np.asarray(getattr(chord, name)(ref_l, est_l), dtype=np.float64)
        valid = comp >= 0
        out[name] = (float(np.sum(comp[valid] * dur[valid])), float(np.sum(dur[valid])))
    return out


def pool(rows: list[dict]) -> dict:
    """Duration-weighted scores over tracks from :func:`compare_chords` rows."""
    res = {}
    for name in CHORD_METRICS:
        num = sum(r[name][0] for r in rows)
        den = sum(r[name][1] for r in rows)
        res[name] = num / den if den > 0 else float("nan")
    return res


def decode_segments(probs: np.ndarray, frame_rate: float, duration: float):
    from tagger.chords import DecodeSettings, decode
    settings = DecodeSettings()
    segs = decode(probs, frame_rate, p_self=settings.p_self, duration=duration,
                  min_duration=settings.min_duration)
    return segments_mir(segs)


def segments_mir(segs) -> tuple[np.ndarray, list[str]]:
    ints = np.array([[s.start, s.end] for s in segs], float).reshape(-1, 2)
    return ints, [vocab.LABELS[s.index] for s in segs]


def score_probs(probs: np.ndarray, frame_rate: float, duration: float, lab_path) -> dict:
    from .labels import read_lab
    ref_i, ref_l = read_lab(lab_path)
    est_i, est_l = decode_segments(probs, frame_rate, duration)
    return compare_chords(ref_i, ref_l, est_i, est_l)


# -- keys ----------------------------------------------------------------------------

def mirex_key_score(ref: int, est: int) -> float:
    """MIREX weighted key score, the rules of ``mir_eval.key.weighted_score``:
    1 same key, 0.5 a fifth above (same mode), 0.3 relative, 0.2 parallel."""
    (rt, rmin), (et, emin) = keys.tonic_mode(ref), keys.tonic_mode(est)
    if ref == est:
        return 1.0
    if rmin == emin and (et - rt) % 12 == 7:
        return 0.5
    if not rmin and emin and (et - rt) % 12 == 9:
        return 0.3
    if rmin and not emin and (et - rt) % 12 == 3:
        return 0.3
    if rmin != emin and rt == et:
        return 0.2
    return 0.0


@lru_cache(maxsize=1)
def key_score_matrix() -> np.ndarray:
    """``M[ref, est]``: the MIREX weighted key score for our 24 keys."""
    return np.array([[mirex_key_score(r, e) for e in range(keys.N_KEYS)]
                     for r in range(keys.N_KEYS)])


def key_outcome(ref: int, est: int) -> str:
    s = key_score_matrix()[ref, est]
    return {1.0: "correct", 0.5: "fifth", 0.3: "relative", 0.2: "parallel"}.get(
        round(float(s), 1), "other")


def key_summary(pairs: list[tuple[int, int]]) -> dict:
    """MIREX weighted score and outcome shares over ``(ref, est)`` pairs."""
    if not pairs:
        return {"tracks": 0}
    m = key_score_matrix()
    out = {"tracks": len(pairs), "weighted": float(np.mean([m[r, e] for r, e in pairs]))}
    for kind in ("correct", "fifth", "relative", "parallel", "other"):
        out[kind] = sum(key_outcome(r, e) == kind for r, e in pairs) / len(pairs)
    return out


# -- speed -------------------------------------------------------------------------

def inference_speed(card, net, device: str | torch.device = "cpu", seconds: float = 240.0,
                    repeats: int = 2) -> dict:
    """x realtime of a chord or key model on ``seconds`` of synthetic audio.

    ``network``: the model alone on precomputed features (windows of 512
    frames for the student, whole clip for recurrent chord models, 15 s
    segments for key models, whole clip for whole-track key models);
    ``end_to_end``: front end + model, as the
    tagger runs them (decoding excluded). Uses torch's current thread count.
    """
    from model_zoo.features import FrontEnd
    device = torch.device(device)
    fe = FrontEnd(**card.features).to(device)
    g = torch.Generator().manual_seed(0)
    audio = (0.1 * torch.randn(1, int(seconds * fe.sample_rate), generator=g)).to(device)
    net = net.to(device).eval()

    def model_only(feats):
        if card.task == "key":
            seconds = card.extra.get("segment_seconds", 15.0)
            if not seconds:  # a whole-track key model
                return net(feats)
            seg = fe.n_frames(int(seconds * fe.sample_rate))
            n = feats.shape[-1] // seg
            x = torch.stack([feats[0, ..., i * seg:(i + 1) * seg] for i in range(max(n, 1))])
            return net(x)
        window = int(card.config.get("window") or card.extra.get("window") or 0)
        if not window:
            return net(feats)
        from .train_chords import predict_logits
        return predict_logits(net, feats[0, 0].T, device, window=window, batch_size=16)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    with torch.inference_mode():
        feats = fe(audio)
        model_only(feats)          # warm-up
        sync()
        best_net = best_all = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            model_only(feats)
            sync()
            best_net = min(best_net, time.perf_counter() - t0)
            t0 = time.perf_counter()
            model_only(fe(audio))
            sync()
            best_all = min(best_all, time.perf_counter() - t0)
    return {"device": str(device), "threads": torch.get_num_threads(),
            "audio_seconds": seconds, "network_x_realtime": round(seconds / best_net, 1),
            "end_to_end_x_realtime": round(seconds / best_all, 1)}


# -- a labelled folder (keychords eval) ------------------------------------------------

def evaluate_folder(paths: list[str], chord_models: list[str], key_models: list[str], *,
                    label_dirs=(), reference: str | None = None, device: str = "auto",
                    progress: bool = True, threads: int = 0, per_track: bool = False,
                    log=print) -> dict:
    """Score models side by side on the labelled files under ``paths``.

    With ``reference`` (a chord model id), every audio file is scored instead
    against that model's decoded chords: student-vs-teacher agreement on
    unlabelled music, in the same mir_eval metrics. A file that fails for any
    model is left out for all of them, so every model is scored on the same
    tracks. ``per_track``: each chord model's entry also lists every track's
    ``{"path", metric: [correct seconds, scored seconds]}`` (for intervals
    and breakdowns).
    """
    from tqdm import tqdm

    from tagger.decode import MODEL_RATE, DecodeError, load_audio
    from tagger.engine import AnalysisError, Analyzer

    files = _scored_files(paths, label_dirs, bool(chord_models), bool(key_models), reference)
    chord_an = {m: Analyzer(m, None, device=device, with_key=False) for m in chord_models}
    ref_an = None if reference is None else Analyzer(
        reference, None, device=device, with_key=False)
    key_an = {m: Analyzer(None, m, device=device, with_chords=False) for m in key_models}
    if threads:  # the Analyzer takes every core by default
        torch.set_num_threads(threads)
    rows = {m: [] for m in chord_models}
    pairs = {m: [] for m in key_models}
    failed = []
    seconds = {m: 0.0 for m in list(chord_models) + list(key_models)}
    audio_s = 0.0
    for path, lab, keyf in tqdm(files, unit="file", desc="eval", disable=not progress,
                                dynamic_ncols=True):
        try:
            audio = load_audio(path, MODEL_RATE)
            chords, keys = _score_file(path, audio, lab, keyf, chord_an, ref_an, key_an,
                                       seconds)
        except (DecodeError, AnalysisError, ValueError, OSError) as e:
            failed.append((path, str(e)))
            continue
        audio_s += len(audio) / MODEL_RATE
        for m, row in chords.items():
            rows[m].append((path, row))
        for m, pair in keys.items():
            pairs[m].append(pair)
    result = _summary(files, audio_s, reference, rows, pairs, seconds, failed)
    if per_track:
        for m, r in rows.items():
            result["chord"][m]["per_track"] = [
                {"path": path, **{k: list(v) for k, v in row.items()}} for path, row in r]
    return result


def _scored_files(paths, label_dirs, chords: bool, keys: bool, reference: str | None):
    """``(audio, .lab or None, .key or None)`` for every file there is something
    to score on."""
    from tagger.scan import scan

    from .labels import LabelIndex
    index = LabelIndex(label_dirs)
    files = []
    for p in scan(paths):
        lab = index.find(p, ".lab") if chords and reference is None else None
        key = index.find(p, ".key") if keys else None
        if lab is not None or key is not None or (reference is not None and chords):
            files.append((p, lab, key))
    return files


def _timed(an, path: str, audio: np.ndarray, seconds: dict, model: str):
    t0 = time.perf_counter()
    r = an.analyse_audio(path, audio)
    seconds[model] += time.perf_counter() - t0
    return r


def _score_file(path, audio, lab, keyf, chord_an: dict, ref_an, key_an: dict,
                seconds: dict) -> tuple[dict, dict]:
    """One file's chord comparison per chord model and ``(reference, estimate)``
    key pair per key model."""
    from .labels import read_key, read_lab
    chords, keys = {}, {}
    if lab is not None or (ref_an is not None and chord_an):
        ref_i, ref_l = (read_lab(lab) if ref_an is None else
                        segments_mir(ref_an.analyse_audio(path, audio).segments))
        for m, an in chord_an.items():
            est_i, est_l = segments_mir(_timed(an, path, audio, seconds, m).segments)
            chords[m] = compare_chords(ref_i, ref_l, est_i, est_l)
    if keyf is not None:
        ref_k = read_key(keyf)
        for m, an in key_an.items():
            keys[m] = (ref_k, _timed(an, path, audio, seconds, m).key_index)
    return chords, keys


def _summary(files, audio_s: float, reference, rows: dict, pairs: dict, seconds: dict,
             failed: list) -> dict:
    from dataclasses import asdict

    from tagger.chords import DecodeSettings

    def speed(m: str):
        return round(audio_s / seconds[m], 1) if seconds[m] else None

    return {"files": len(files), "audio_hours": round(audio_s / 3600, 3),
            "reference": reference or "labels",
            "chord": {m: {"tracks": len(r), **pool([row for _, row in r]),
                          "x_realtime": speed(m)}
                      for m, r in rows.items()},
            "key": {m: {**key_summary(p), "x_realtime": speed(m)} for m, p in pairs.items()},
            "failed": failed, "decode": asdict(DecodeSettings())}


def format_eval(result: dict) -> str:
    ref = result.get("reference", "labels")
    what = "labelled files" if ref == "labels" else f"files, scored against {ref}'s chords"
    lines = [f"{result['files']} {what}, {result['audio_hours']:.2f} h of audio"]
    if result["chord"]:
        w = max(10, *(len(m) for m in result["chord"]))
        head = f"{'chord model':<{w}}  tracks  " + "  ".join(f"{m:>8}" for m in CHORD_METRICS)
        lines += ["", head + "  x realtime", "-" * (len(head) + 12)]
        for m, r in result["chord"].items():
            vals = "  ".join(f"{r[k]:8.4f}" for k in CHORD_METRICS)
            xr = f"{r['x_realtime']:10.1f}" if r.get("x_realtime") else f"{'-':>10}"
            lines.append(f"{m:<{w}}  {r['tracks']:6d}  {vals}  {xr}")
    if result["key"]:
        w = max(10, *(len(m) for m in result["key"]))
        cols = ("weighted", "correct", "fifth", "relative", "parallel", "other")
        head = f"{'key model':<{w}}  tracks  " + "  ".join(f"{c:>8}" for c in cols)
        lines += ["", head + "  x realtime", "-" * (len(head) + 12)]
        for m, r in result["key"].items():
            if not r.get("tracks"):
                lines.append(f"{m:<{w}}       0")
                continue
            vals = "  ".join(f"{r[c]:8.4f}" for c in cols)
            xr = f"{r['x_realtime']:10.1f}" if r.get("x_realtime") else f"{'-':>10}"
            lines.append(f"{m:<{w}}  {r['tracks']:6d}  {vals}  {xr}")
    for path, err in result.get("failed", []):
        lines.append(f"failed: {path}: {err}")
    return "\n".join(lines)

