#!/usr/bin/env python
"""Speed of the chord student vs the crema port, per 4-minute track.

Measures, for a track of random audio (default 240 s):

* network alone on precomputed features: the student as the tagger runs
  it (the track cut into fixed windows of ``--window`` frames overlapping by
  ``--overlap``, stacked into one batch), and the crema port on the whole
  track at once (its BiGRUs are sequential, windows would not help it);
* end to end: the model's own feature front end (``model_zoo.features``)
  on the audio, then the network.

Each figure is the median of ``--runs`` timed runs after ``--warmup`` runs,
in wall-clock milliseconds; ``cpu ms`` is the process CPU time (all threads)
for the same runs (CPU only), less sensitive to other load on the machine.
Weights are random (speed does not depend on them).

    python benchmarks/model_speed.py                 # 2 CPU threads
    python benchmarks/model_speed.py --threads 1
    python benchmarks/model_speed.py --device cuda --amp bf16

Not a unit test; run from the repository root.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model_zoo.student import ChordStudent  # noqa: E402


def n_params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def windows(x: torch.Tensor, window: int, overlap: int) -> torch.Tensor:
    """Cut ``(1, H, F, T)`` features into ``(n, H, F, window)`` overlapping windows
    (the last one zero-padded), as the tagger batches them."""
    hop = window - overlap
    t = x.shape[-1]
    n = max(1, -(-max(t - overlap, 1) // hop))
    need = (n - 1) * hop + window
    x = torch.nn.functional.pad(x, (0, need - t))
    return x[0].unfold(-1, window, hop).permute(2, 0, 1, 3).contiguous()


def timed(fn, runs: int, warmup: int, device: torch.device) -> tuple[float, float | None]:
    """Median wall ms and median process-CPU ms (None on CUDA) of ``fn()``."""
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        fn()
    sync()
    walls, cpus = [], []
    for _ in range(runs):
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        sync()
        walls.append((time.perf_counter() - w0) * 1e3)
        cpus.append((time.process_time() - c0) * 1e3)
    return statistics.median(walls), (statistics.median(cpus) if device.type == "cpu" else None)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:n] (default cpu)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    ap.add_argument("--seconds", type=float, default=240.0, help="track length (default 240)")
    ap.add_argument("--runs", type=int, default=5, help="timed runs, median reported")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--window", type=int, default=256, help="student window, frames")
    ap.add_argument("--overlap", type=int, default=64, help="student window overlap, frames")
    ap.add_argument("--batch", type=int, default=0,
                    help="student windows per forward call (0: all windows of the track)")
    ap.add_argument("--tracks", type=int, default=1,
                    help="tracks batched together for the student (GPU throughput)")
    ap.add_argument("--amp", choices=["none", "bf16", "fp16"], default="none",
                    help="run the networks under torch.autocast")
    ap.add_argument("--no-crema", action="store_true", help="skip the crema port")
    ap.add_argument("--no-frontend", action="store_true", help="skip end-to-end timings")
    ap.add_argument("--config", default="", help="JSON ChordStudent config (default: shipped)")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    amp = (contextlib.nullcontext() if args.amp == "none" else
           torch.autocast(device.type, dtype=torch.bfloat16 if args.amp == "bf16" else torch.float16))

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

    import json
    cfg = json.loads(args.config) if args.config else {}
    rows = []  # (name, params, net_ms, net_cpu, e2e_ms, e2e_cpu, note)

    def audio_for(feat: dict, n_tracks: int = 1) -> torch.Tensor:
        n = int(round(args.seconds * feat["sample_rate"]))
        return (torch.rand(n_tracks, n, device=device) * 2 - 1) * 0.3

    # ---- student
    student = ChordStudent(**cfg).eval().to(device)
    sfeat = ChordStudent.FEATURES
    n_frames = 1 + int(round(args.seconds * sfeat["sample_rate"])) // sfeat["hop_length"]
    xs = torch.rand(args.tracks, 1, sfeat["n_bins"], n_frames, device=device) * 3

    def run_student(x):
        wins = torch.cat([windows(x[i:i + 1], args.window, args.overlap)
                          for i in range(x.shape[0])])
        step = args.batch or wins.shape[0]
        with torch.inference_mode(), amp:
            return [student(wins[i:i + step])["chord"] for i in range(0, wins.shape[0], step)]

    n_win = windows(xs[:1], args.window, args.overlap).shape[0]
    net_ms, net_cpu = timed(lambda: run_student(xs), args.runs, args.warmup, device)
    e2e_ms = e2e_cpu = None
    if FrontEnd is not None and not args.no_frontend:
        fe = FrontEnd(**sfeat).to(device).eval()
        audio = audio_for(sfeat, args.tracks)

        def e2e():
            with torch.inference_mode():
                feats = fe(audio)
            return run_student(feats)
        e2e_ms, e2e_cpu = timed(e2e, args.runs, args.warmup, device)
    per = args.tracks
    rows.append(("student", n_params(student), net_ms / per, net_cpu and net_cpu / per,
                 e2e_ms and e2e_ms / per, e2e_cpu and e2e_cpu / per,
                 f"{n_win} windows x {args.window} (overlap {args.overlap})"
                 + (f", {per} tracks/batch" if per > 1 else "")))

    # ---- crema port
    if CremaChord is not None:
        crema = CremaChord().eval().to(device)
        cfeat = CremaChord.FEATURES
        cframes = 1 + int(round(args.seconds * cfeat["sample_rate"])) // cfeat["hop_length"]
        h = len(cfeat.get("harmonics", [1]))
        xc = -80 * torch.rand(1, h, cfeat["n_bins"], cframes, device=device)

        def run_crema(x):
            with torch.inference_mode(), amp:
                return crema(x)["chord"]
        c_ms, c_cpu = timed(lambda: run_crema(xc), args.runs, args.warmup, device)
        ce_ms = ce_cpu = None
        if FrontEnd is not None and not args.no_frontend:
            cfe = FrontEnd(**cfeat).to(device).eval()
            caudio = audio_for(cfeat)

            def ce2e():
                with torch.inference_mode():
                    feats = cfe(caudio)
                return run_crema(feats)
            ce_ms, ce_cpu = timed(ce2e, args.runs, args.warmup, device)
        rows.append(("crema port", n_params(crema), c_ms, c_cpu, ce_ms, ce_cpu,
                     f"whole track, {cframes} frames"))

    # ---- report
    base = next((r for r in rows if r[0] == "crema port"), None)

    def fmt(v):
        return "-" if v is None else f"{v:.0f}"

    def ratio(a, b):
        return "-" if a is None or b is None or a == 0 else f"{b / a:.1f}x"

    load = ""
    if hasattr(os, "getloadavg"):
        load = f", load avg {os.getloadavg()[0]:.2f}"
    print(f"\ntrack {args.seconds:.0f} s, device {device}, threads {args.threads}, "
          f"amp {args.amp}, median of {args.runs} runs{load}")
    head = (f"{'model':<11} {'params':>9} {'net ms':>8} {'net cpu':>8} {'e2e ms':>8} "
            f"{'e2e cpu':>8} {'speed-up net':>13} {'speed-up e2e':>13}  notes")
    print(head)
    print("-" * len(head))
    for name, p, nm, nc, em, ec, note in rows:
        su_n = ratio(nm, base[2]) if base else "-"
        su_e = ratio(em, base[4]) if base else "-"
        print(f"{name:<11} {p:>9,} {fmt(nm):>8} {fmt(nc):>8} {fmt(em):>8} {fmt(ec):>8} "
              f"{su_n:>13} {su_e:>13}  {note}")
    if base is None:
        print("(speed-up needs model_zoo.crema.CremaChord)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
