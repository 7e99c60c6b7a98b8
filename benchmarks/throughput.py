"""Tagger throughput: decode-only ceiling vs the full pipeline, same files.

    python benchmarks/throughput.py [--data DIR] [--tracks 12] [--long-hours 2]
        [--workers N] [--device cpu] [--chord-model ID] [--key-model ID]

Builds (once, in --data) a set of 4-minute tracks in mixed formats plus one
long file, then runs in this process tree:

(a) decode only, with the same worker processes the tagger uses;
(b) the full ``keychords tag`` pipeline (analysis and tag writing on copies).

Prints tracks/min, x realtime, the ratio b/a and the peak RSS of the
process tree (this process plus its workers, sampled every 50 ms).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

FORMATS = [("mp3", ".mp3", "libmp3lame"), ("flac", ".flac", "flac"),
           ("ipod", ".m4a", "aac"), ("ogg", ".opus", "libopus")]


def synth_music(seconds: float, sr: int, seed: int) -> np.ndarray:
    """Chord progression with harmonics and a drum-like noise pulse (stereo)."""
    rng = np.random.default_rng(seed)
    roots = rng.choice([0, 2, 4, 5, 7, 9], size=8)
    t = np.arange(int(seconds * sr)) / sr
    out = np.zeros_like(t)
    bar = 2.0
    for i, r in enumerate(np.resize(roots, int(seconds / bar) + 1)):
        seg = (t >= i * bar) & (t < (i + 1) * bar)
        f0 = 110 * 2 ** (r / 12)
        for third, w in ((0, 1.0), (4 if i % 3 else 3, 0.7), (7, 0.6)):
            for h in (1, 2, 3):
                out[seg] += w / h * np.sin(2 * np.pi * f0 * 2 ** (third / 12) * h * t[seg])
    out += 0.05 * rng.standard_normal(len(t)) * (np.sin(2 * np.pi * 2 * t) > 0.9)
    out = 0.3 * out / np.abs(out).max()
    return np.stack([out, out]).astype(np.float32)


def encode(path: Path, samples: np.ndarray, sr: int, fmt: str, codec: str) -> None:
    import av
    rate = 48000 if codec == "libopus" else sr
    if rate != sr:
        idx = np.arange(int(samples.shape[1] * rate / sr)) * sr / rate
        samples = np.stack([np.interp(idx, np.arange(samples.shape[1]), ch) for ch in samples])
    tmp = path.with_suffix(path.suffix + ".part")
    with av.open(str(tmp), "w", format=fmt) as out:
        st = out.add_stream(codec, rate=rate, layout="stereo")
        fmt_name = st.codec_context.codec.audio_formats[0].name
        block = rate
        for i in range(0, samples.shape[1], block):
            chunk = np.ascontiguousarray(samples[:, i: i + block])
            if fmt_name.endswith("p"):
                frame = av.AudioFrame.from_ndarray(chunk.astype(np.float32), format="fltp",
                                                   layout="stereo")
            else:
                frame = av.AudioFrame.from_ndarray(
                    (chunk.T.reshape(1, -1) * 32767).astype(np.int16), format="s16",
                    layout="stereo")
            frame.sample_rate = rate
            frame.pts = None
            for pkt in st.encode(frame):
                out.mux(pkt)
        for pkt in st.encode(None):
            out.mux(pkt)
    tmp.rename(path)


def build_set(data: Path, tracks: int, long_hours: float, sr: int = 22050) -> list[str]:
    data.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(tracks):
        fmt, ext, codec = FORMATS[i % len(FORMATS)]
        p = data / f"track{i:02d}{ext}"
        if not p.exists():
            encode(p, synth_music(240.0, sr, i), sr, fmt, codec)
        paths.append(str(p))
    if long_hours > 0:
        p = data / f"long_{long_hours:g}h.mp3"
        if not p.exists():
            import av
            # concatenate encoded 10-minute blocks of music
            block = synth_music(600.0, sr, 99)
            reps = int(long_hours * 6)
            with av.open(str(p) + ".part", "w", format="mp3") as out:
                st = out.add_stream("libmp3lame", rate=sr, layout="stereo")
                for _ in range(reps):
                    for i in range(0, block.shape[1], sr):
                        frame = av.AudioFrame.from_ndarray(
                            np.ascontiguousarray(block[:, i: i + sr]), format="fltp",
                            layout="stereo")
                        frame.sample_rate = sr
                        for pkt in st.encode(frame):
                            out.mux(pkt)
                for pkt in st.encode(None):
                    out.mux(pkt)
            os.rename(str(p) + ".part", p)
        paths.append(str(p))
    return paths


class TreeRSS:
    """Peak resident memory of this process and its children (Linux /proc)."""

    def __init__(self, interval: float = 0.05):
        self.interval, self.peak, self._stop = interval, 0, threading.Event()

    @staticmethod
    def _rss(pid: int) -> int:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    def _children(self, pid: int) -> list[int]:
        out = []
        try:
            for tid in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    for c in f.read().split():
                        out.append(int(c))
                        out.extend(self._children(int(c)))
        except OSError:
            pass
        return out

    def _run(self):
        me = os.getpid()
        while not self._stop.is_set():
            total = self._rss(me) + sum(self._rss(c) for c in self._children(me))
            self.peak = max(self.peak, total)
            time.sleep(self.interval)

    def __enter__(self):
        self.peak = 0
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self._stop.clear()


def audio_seconds(paths: list[str]) -> float:
    import av
    total = 0.0
    for p in paths:
        with av.open(p) as c:
            total += c.duration / 1e6
    return total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="/tmp/keychords-bench", type=Path)
    ap.add_argument("--tracks", type=int, default=12)
    ap.add_argument("--long-hours", type=float, default=2.0)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--chord-model")
    ap.add_argument("--key-model")
    args = ap.parse_args()

    from tagger import pipeline
    from tagger.engine import Analyzer
    from tagger.workers import decoded_stream

    paths = build_set(args.data, args.tracks, args.long_hours)
    total = audio_seconds(paths)
    print(f"set: {len(paths)} files, {total / 3600:.2f} h of audio, workers={args.workers}")

    with TreeRSS() as mem_a:
        t0 = time.monotonic()
        for _ in decoded_stream(paths, 22050, args.workers):
            pass
        dec = time.monotonic() - t0
    print(f"(a) decode only : {dec:7.1f} s  {len(paths) / dec * 60:7.1f} tracks/min  "
          f"{total / dec:7.1f}x realtime  peak RSS {mem_a.peak / 2**20:7.0f} MiB")

    work = args.data / "copies"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    copies = []
    for p in paths:
        q = work / Path(p).name
        shutil.copy(p, q)
        copies.append(str(q))
    with TreeRSS() as mem_b:
        t0 = time.monotonic()
        analyzer = Analyzer(args.chord_model, args.key_model, device=args.device,
                            batch_size=args.batch_size)
        load = time.monotonic() - t0
        failed = 0
        for o in pipeline.run(copies, analyzer, pipeline.Options(
                workers=args.workers, group_size=max(1, args.batch_size // 2),
                overwrite=True)):
            failed += o.status != "ok"
            if o.status != "ok":
                print(f"  {o.path}: {o.status} {o.error}")
        full = time.monotonic() - t0
    print(f"(b) full tag    : {full:7.1f} s  {len(paths) / full * 60:7.1f} tracks/min  "
          f"{total / full:7.1f}x realtime  peak RSS {mem_b.peak / 2**20:7.0f} MiB  "
          f"(model load {load:.1f} s, models {analyzer.model_ids}, device {analyzer.device})")
    print(f"ratio b/a       : {dec / full:.3f}   failed: {failed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
