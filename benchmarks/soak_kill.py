"""Soak test: SIGKILL keychords at random moments while it tags, for minutes.

The long version of ``tests/test_safety_kill.py`` (issue 7, guarantee 2)::

    python benchmarks/soak_kill.py                 # 3 minutes, 200 files
    python benchmarks/soak_kill.py --minutes 20 --files 400 --seed 5

Two loops share the time:

* write loop: a process calls ``tagger.tags.write_tags`` over the files
  again and again (every format, untagged and tagged, tags that fit their
  padding and tags that move the audio) and is killed after a random delay;
  nearly every kill lands inside a write.
* CLI loop: the real ``keychords tag --workers 0`` (with two tiny
  constant-output models, so that the time goes to decoding and writing) is
  killed at random moments, over and over, then allowed to finish.

After every kill, every file the kill could have touched is checked: either
byte-identical to the original, or fully tagged (all fields of one write)
with the audio packets, the raw audio bytes, every decoded sample and every
other tag unchanged; the temporary files a kill leaves must be removed by
the next run. Prints the counts; the exit status is 1 if any file broke.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from test_safety import build_templates, install_tiny_models
from test_safety_kill import soak_cli, soak_write_tags


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=3.0, help="total time (default 3)")
    ap.add_argument("--files", type=int, default=200, help="files per library (default 200)")
    ap.add_argument("--cli-share", type=float, default=0.5,
                    help="share of the time for the CLI loop (default 0.5)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    total = args.minutes * 60
    broken = []
    with tempfile.TemporaryDirectory(prefix="keychords-soak-") as tmp:
        tmp = Path(tmp)
        t0 = time.monotonic()
        templates = build_templates(tmp / "templates")
        models = install_tiny_models(tmp / "models")
        print(f"{len(templates)} template files of every format ready in "
              f"{time.monotonic() - t0:.1f} s", flush=True)

        t0 = time.monotonic()
        soak = soak_write_tags(templates, tmp / "writes", seconds=total * (1 - args.cli_share),
                               n_files=args.files, seed=args.seed)
        print(f"write loop ({time.monotonic() - t0:.0f} s): {soak.line()}", flush=True)
        broken += soak.broken

        if args.cli_share > 0:
            t0 = time.monotonic()
            rounds = 0
            cli_total = None
            while time.monotonic() - t0 < total * args.cli_share or rounds == 0:
                left = total * args.cli_share - (time.monotonic() - t0)
                soak, _, _ = soak_cli(templates, models, tmp / f"cli{rounds}",
                                      seconds=max(10.0, min(120.0, left)),
                                      n_files=args.files, seed=args.seed + rounds)
                rounds += 1
                broken += soak.broken
                if cli_total is None:
                    cli_total = soak
                else:
                    for name in ("kills", "runs", "killed_mid_write", "temp_files_left",
                                 "temp_files_removed", "writes", "checks"):
                        setattr(cli_total, name, getattr(cli_total, name) + getattr(soak, name))
                print(f"  CLI library {rounds}: {soak.line()}", flush=True)
            print(f"CLI loop ({time.monotonic() - t0:.0f} s, {rounds} libraries of "
                  f"{args.files} files, each finished by a last run): {cli_total.line()}")
            print("  (CLI 'killed mid-write' counts kills that left a temporary file)")
    for b in broken[:20]:
        print("BROKEN:", b)
    print(f"files broken: {len(broken)}")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
