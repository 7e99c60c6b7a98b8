"""Time ``keychords apply`` on a results table of many files.

    python benchmarks/apply_speed.py [--files 1000] [--format mp3] [--dir DIR]

Copies one short encoded file ``--files`` times, writes a results table
row for each (as ``keychords tag --ray`` would), then times ``keychords
apply`` (every file written through the safe writer and marked done) and a
second run (every file "already applied"): wall time, and the CPU time this
process used (what other jobs on a loaded machine do not inflate).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def build(root: Path, n: int, fmt: str) -> Path:
    import numpy as np

    from benchmarks.throughput import encode, synth_music
    from tagger import pipeline
    from tagger import results_table as table
    from tagger.result import TrackResult
    from tagger.state import file_stat
    root.mkdir(parents=True, exist_ok=True)
    src = root / f"src.{fmt}"
    encode(src, synth_music(10.0, 22050, seed=0).astype(np.float32), 22050,
           {"mp3": "mp3", "flac": "flac"}[fmt], {"mp3": "libmp3lame", "flac": "flac"}[fmt])
    rows = []
    for i in range(n):
        p = root / "lib" / f"{i // 100:02d}" / f"t{i:05d}.{fmt}"
        p.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, p)
        size, mtime = file_stat(p)
        res = TrackResult(str(p), duration=10.0, key_index=21, key_confidence=0.9,
                          chords="Am F C G", progression="vi IV I V",
                          models={"chord": "kc-chord-v1", "key": "kc-key-v3"})
        rows.append(table.result_row({"path": str(p), "size": size, "mtime_ns": mtime}, res,
                                     pipeline.tag_values(res, pipeline.Options())))
    table.write_part(root / "results", rows)
    return root / "results"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--format", choices=["mp3", "flac"], default="mp3")
    ap.add_argument("--dir", type=Path)
    args = ap.parse_args()
    root = Path(args.dir or tempfile.mkdtemp(prefix="kc-apply-"))
    os.environ["KEYCHORDS_STATE"] = str(root / "state.sqlite")
    results = build(root, args.files, args.format)
    from tagger import cli
    for label in ("apply", "apply again"):
        start, cpu = time.monotonic(), time.process_time()
        code = cli.main(["apply", str(results), "-q"])
        print(f"{label}: {args.files} files in {time.monotonic() - start:.2f} s, "
              f"{time.process_time() - cpu:.2f} s of CPU (exit {code})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
