#!/usr/bin/env python
"""Whole-track key aggregation, teacher combinations and confidence calibration,
measured on segment logits dumped by ``training/key_logits.py``.

``report``: for every model and aggregation rule (:mod:`tagger.key_inference`),
MIREX weighted (mir_eval's rule: the fifth counted only upward; and with the
fifth counted both ways), accuracy, and the expected calibration error of the
top probability (15 equal-width bins) before and after fitting a temperature
(by NLL) on the same dumps (and, less optimistic, fitted on the other half
of the tracks: ``ece_calibrated_2fold``); and the two teachers' combinations (weighted
arithmetic / geometric means of their whole-track probabilities, and per
15 s segment as ``train-key``'s KD targets: ``segment_targets``).
``apply``: scores dumps with a fixed aggregation and temperature (to report a
test set once with the settings chosen on validation). ``write``: fits the
temperature of one model and aggregation on the dumps and stores both in the
model's card (``extra["key_inference"]``).

    python training/calibrate_key.py report /work/data/key_logits/*_validation.json
    python training/calibrate_key.py write kc-key-v3 --aggregation mean_prob \\
        /work/data/key_logits/*_validation.json --card model_zoo/weights/kc-key-v3.json

Only single-key songs are used (a song with key changes has no one right answer).
Not a unit test; run from the repository root.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import minimize_scalar

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model_zoo import keys  # noqa: E402
from tagger.key_inference import AGGREGATIONS, aggregate  # noqa: E402

ECE_BINS = 15


def load(paths) -> list[dict]:
    rows = []
    for p in paths:
        rows += [t for t in json.loads(Path(p).read_text())["tracks"] if t["single_key"]]
    return rows


def weighted(ref: int, est: int, both_fifths: bool = False) -> float:
    """MIREX weighted score; ``both_fifths``: a fifth below also scores 0.5."""
    (rt, rmin), (et, emin) = keys.tonic_mode(ref), keys.tonic_mode(est)
    if ref == est:
        return 1.0
    if rmin == emin and (et - rt) % 12 in ((5, 7) if both_fifths else (7,)):
        return 0.5
    if rmin != emin and (et - rt) % 12 == (9 if not rmin else 3):
        return 0.3
    if rmin != emin and rt == et:
        return 0.2
    return 0.0


def track_logp(rows, model: str, aggregation: str, stride: int = 1) -> np.ndarray:
    """``(n, 24)`` whole-track log-probabilities of ``model`` (before any temperature),
    from every ``stride``-th segment."""
    return np.stack([aggregate(torch.tensor(r["logits"][model][::stride]), aggregation).numpy()
                     for r in rows])


def ece(probs: np.ndarray, refs: np.ndarray) -> float:
    """Expected calibration error of the top probability against plain accuracy."""
    conf, correct = probs.max(1), (probs.argmax(1) == refs).astype(float)
    bins = np.minimum((conf * ECE_BINS).astype(int), ECE_BINS - 1)
    return float(sum(abs(correct[bins == b].mean() - conf[bins == b].mean()) * (bins == b).sum()
                     for b in range(ECE_BINS) if (bins == b).any()) / len(conf))


def softmax_t(logp: np.ndarray, t: float) -> np.ndarray:
    return torch.tensor(logp / t).softmax(-1).numpy()


def fit_temperature(logp: np.ndarray, refs: np.ndarray) -> float:
    """The temperature minimising the NLL of the labels."""
    def nll(log_t):
        lp = torch.tensor(logp / np.exp(log_t)).log_softmax(-1).numpy()
        return -float(lp[np.arange(len(refs)), refs].mean())
    return float(np.exp(minimize_scalar(nll, bounds=(-3.0, 3.0), method="bounded").x))


def cv_ece(logp: np.ndarray, refs: np.ndarray) -> float:
    """ECE with the temperature fitted on the other half (2-fold, alternate tracks)."""
    cal = np.zeros_like(logp)
    for k in (0, 1):
        fit, use = np.arange(len(refs)) % 2 != k, np.arange(len(refs)) % 2 == k
        cal[use] = softmax_t(logp[use], fit_temperature(logp[fit], refs[fit]))
    return round(ece(cal, refs), 4)


def scores(probs: np.ndarray, refs: np.ndarray, temperature: float = 1.0) -> dict:
    est = probs.argmax(1)
    cal = softmax_t(np.log(np.clip(probs, 1e-12, None)), temperature)
    return {"tracks": len(refs),
            "weighted": round(float(np.mean([weighted(r, e) for r, e in zip(refs, est)])), 4),
            "weighted_both_fifths": round(float(np.mean(
                [weighted(r, e, True) for r, e in zip(refs, est)])), 4),
            "accuracy": round(float(np.mean(est == refs)), 4),
            "ece": round(ece(probs, refs), 4), "ece_calibrated": round(ece(cal, refs), 4),
            "temperature": round(temperature, 4)}


def report(rows) -> dict:
    refs = np.array([r["key"] for r in rows])
    models = [m for m in rows[0]["logits"] if all(m in r["logits"] for r in rows)]
    out = {"models": {}, "combinations": {}}
    for m in models:
        for agg in AGGREGATIONS:
            lp = track_logp(rows, m, agg)
            out["models"][f"{m} {agg}"] = {**scores(np.exp(lp), refs, fit_temperature(lp, refs)),
                                           "ece_calibrated_2fold": cv_ece(lp, refs)}
    if "skey" in models and "keynet" in models:
        out["segment_targets"] = segment_targets(rows)
    pairs = [("skey", "keynet"), ("skey", "keynet@15")]
    for a, b in pairs:
        if a not in models or b not in models:
            continue
        pa = np.exp(track_logp(rows, a, "mean_prob"))
        pb = np.exp(track_logp(rows, b, "mean_prob"))
        for w in np.linspace(0, 1, 11):
            for how in ("arithmetic", "geometric"):
                p = combine(pa, pb, w, how)
                out["combinations"][f"{a}+{b} {how} w_{a}={w:.1f}"] = scores(p, refs)
    return out


def segment_targets(rows, a: str = "skey", b: str = "keynet") -> dict:
    """MIREX weighted of the combined teachers per 15 s segment of ``a``, as
    ``train-key`` forms its KD targets (a whole-track ``b``: its one answer for
    every segment), over weights and both means."""
    refs, pa, pb = [], [], []
    for r in rows:
        sa = torch.tensor(r["logits"][a]).softmax(-1).numpy()
        sb = torch.tensor(r["logits"][b]).softmax(-1).numpy()
        sb = np.repeat(sb, len(sa), 0) if len(sb) == 1 else sb[: len(sa)]
        refs += [r["key"]] * len(sa)
        pa.append(sa)
        pb.append(sb)
    pa, pb = np.concatenate(pa), np.concatenate(pb)
    out = {}
    for w in np.linspace(0, 1, 11):
        for how in ("arithmetic", "geometric"):
            est = combine(pa, pb, w, how).argmax(1)
            out[f"{a}+{b} {how} w_{a}={w:.1f}"] = round(float(np.mean(
                [weighted(r, e) for r, e in zip(refs, est)])), 4)
    return {"segments": len(refs), "weighted": out}


def combine(pa, pb, w: float, how: str) -> np.ndarray:
    if how == "arithmetic":
        return w * pa + (1 - w) * pb
    lp = w * np.log(np.clip(pa, 1e-8, None)) + (1 - w) * np.log(np.clip(pb, 1e-8, None))
    return softmax_t(lp, 1.0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("report")
    p.add_argument("dumps", nargs="+")
    for name in ("apply", "write"):
        p = sub.add_parser(name)
        p.add_argument("model")
        p.add_argument("dumps", nargs="+")
        p.add_argument("--aggregation", choices=AGGREGATIONS, default="mean_prob")
        if name == "apply":
            p.add_argument("--temperature", type=float, required=True)
            p.add_argument("--stride", type=int, default=1,
                           help="use every N-th segment only (the cost of fewer segments)")
        else:
            p.add_argument("--card", required=True, help="the model card (.json) to update")
    args = ap.parse_args()
    rows = load(args.dumps)
    if args.cmd == "report":
        print(json.dumps(report(rows), indent=1))
        return 0
    refs = np.array([r["key"] for r in rows])
    lp = track_logp(rows, args.model, args.aggregation, getattr(args, "stride", 1))
    t = args.temperature if args.cmd == "apply" else fit_temperature(lp, refs)
    res = scores(np.exp(lp), refs, t)
    print(json.dumps({args.model: res}, indent=1))
    if args.cmd == "write":
        card = json.loads(Path(args.card).read_text())
        extra = card.setdefault("extra", {})
        extra["key_inference"] = {
            **{k: v for k, v in (extra.get("key_inference") or {}).items()
               if k == "track_p_self"},
            "aggregation": args.aggregation, "temperature": round(t, 4),
            "fitted_on": [Path(d).stem for d in args.dumps], "single_key_tracks": len(rows),
            "ece_at_temperature_1": res["ece"], "ece": res["ece_calibrated"]}
        Path(args.card).write_text(json.dumps(card, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
