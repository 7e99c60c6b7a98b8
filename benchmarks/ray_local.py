"""``keychords tag --ray`` on a local cluster against plain ``keychords tag``,
same files, same machine, one after the other.

    python benchmarks/ray_local.py [--tracks 20] [--seconds 30] [--rounds 1]
        [--data DIR]

Makes ``--tracks`` synthetic FLAC tracks (``benchmarks/ray_scale.py``'s
``make_tracks``), then times, as fresh processes, ``keychords tag --dry-run``
(all CPUs) and ``keychords tag --ray DIR --results TMP`` (a local Ray
cluster started by the command: its start is included). Neither writes to
the files. With ``--rounds N`` the pair runs N times, alternating which
goes first; the ratio is Ray's wall time over local's.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def timed(args: list[str], env: dict) -> float:
    start = time.monotonic()
    subprocess.run([sys.executable, "-m", "tagger.cli", *args], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return time.monotonic() - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tracks", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "kc-ray-local")
    args = ap.parse_args()
    from benchmarks.ray_scale import make_tracks
    lib = args.data / f"{args.tracks}x{int(args.seconds)}s"
    make_tracks(lib, args.tracks, args.seconds)
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    print(f"{args.tracks} tracks of {args.seconds:.0f} s in {lib}; {os.cpu_count()} CPUs")
    for r in range(args.rounds):
        with tempfile.TemporaryDirectory() as tmp:
            runs = {"local": ["tag", "--dry-run", "-q", "--state", f"{tmp}/state.sqlite",
                              str(lib)],
                    "ray": ["tag", "--ray", str(lib), "--results", f"{tmp}/results", "-q"]}
            order = ["local", "ray"] if r % 2 == 0 else ["ray", "local"]
            wall = {name: timed(runs[name], env) for name in order}
        print(f"round {r + 1}: local tag {wall['local']:.1f} s, tag --ray {wall['ray']:.1f} s"
              f" (ratio {wall['ray'] / wall['local']:.2f})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
