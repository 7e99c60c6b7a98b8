"""How repeatable is a chord model's output under an inaudible change of its input?

Each file is analysed twice: as decoded, and delayed by ``--shift`` samples
of silence (default 1024 at 22050 Hz: half a chord frame, 46 ms). The second
result is moved back by the delay and scored against the first with the
same mir_eval metrics as ``keychords eval --reference-model``. A model that
agreed with itself only ``x`` of the time under such a change puts a ceiling
of about ``x`` on any other model's agreement with it: it is the teacher's
own noise floor for the student-vs-teacher agreement.

With ``--reference R`` (which must also be one of the ``--model``s), every
other model is also scored against ``R``'s chords (as ``keychords eval
--reference-model R``), in all of the time and in the part where ``R``
agrees with its own delayed run (majmin, sampled every 0.1 s): how well a
student follows the part of the teacher's output that is not noise.

Usage::

    python training/stability.py /work/data/heldout_real --model crema \\
        --model kc-chord-v1 --reference crema
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tagger.decode import DecodeError, load_audio
from tagger.distill.evaluate import compare_chords, pool, segments_mir
from tagger.engine import Analyzer, DecodeSettings
from tagger.scan import scan

DEFAULT_DECODE = DecodeSettings()

GRID = 0.1  # seconds between the samples of the stable-part comparison


def chords_twice(an: Analyzer, path: str, audio: np.ndarray, shift: int):
    """``(intervals, labels)`` of the model on ``audio`` and on ``audio`` delayed by
    ``shift`` samples (moved back by the delay)."""
    ref_i, ref_l = segments_mir(an.analyse_audio(path, audio).segments)
    delayed = np.concatenate([np.zeros(shift, audio.dtype), audio])
    est_i, est_l = segments_mir(an.analyse_audio(path, delayed).segments)
    est_i = np.clip(est_i - shift / an.sample_rate, 0.0, None)
    keep = est_i[:, 1] > est_i[:, 0]
    return (ref_i, ref_l), (est_i[keep], [lab for lab, k in zip(est_l, keep) if k])


def sampled_majmin(ref, est, times: np.ndarray) -> np.ndarray:
    """mir_eval majmin comparison (1, 0, or -1 = not scored) at ``times``."""
    from mir_eval import chord, util
    r = util.interpolate_intervals(ref[0], ref[1], times, chord.NO_CHORD)
    e = util.interpolate_intervals(est[0], est[1], times, chord.NO_CHORD)
    return np.asarray(chord.majmin(r, e), float)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="+")
    ap.add_argument("--model", action="append", required=True, help="chord model id")
    ap.add_argument("--shift", type=int, default=1024, help="delay in samples at 22050 Hz")
    ap.add_argument("--p-self", type=float, default=DEFAULT_DECODE.p_self)
    ap.add_argument("--reference", help="score the other models against this one too")
    args = ap.parse_args(argv)
    if args.reference and args.reference not in args.model:
        ap.error("--reference must be one of the --model ids")
    decode = DecodeSettings(p_self=args.p_self, min_duration=DEFAULT_DECODE.min_duration)
    ans = {m: Analyzer(m, None, with_key=False, decode=decode) for m in args.model}
    rows = {m: [] for m in args.model}
    vs_ref = {m: [] for m in args.model if m != args.reference}
    stable = {m: [0.0, 0.0] for m in vs_ref}      # correct, scored samples
    stable_share = [0.0, 0.0]
    files = list(scan(args.paths))
    seconds = 0.0
    for path in files:
        try:
            audio = load_audio(path, 22050)
        except DecodeError as e:
            print(f"skipped {path}: {e}", file=sys.stderr)
            continue
        seconds += len(audio) / 22050
        runs = {m: chords_twice(an, path, audio, args.shift) for m, an in ans.items()}
        for m, (plain, delayed) in runs.items():
            rows[m].append(compare_chords(*plain, *delayed))
        if args.reference:
            ref, ref_delayed = runs[args.reference]
            times = np.arange(0.0, len(audio) / 22050, GRID)
            ok = sampled_majmin(ref, ref_delayed, times) == 1
            stable_share[0] += ok.sum()
            stable_share[1] += len(times)
            for m, scored in vs_ref.items():
                plain = runs[m][0]
                scored.append(compare_chords(*ref, *plain))
                c = sampled_majmin(ref, plain, times)[ok]
                stable[m][0] += (c == 1).sum()
                stable[m][1] += (c >= 0).sum()
    out = {"files": len(files), "hours": round(seconds / 3600, 3), "shift": args.shift,
           "p_self": args.p_self,
           "self_agreement": {m: {"tracks": len(r), **pool(r)} for m, r in rows.items()}}
    if args.reference:
        out["reference"] = args.reference
        out["reference_stable_share"] = round(stable_share[0] / max(stable_share[1], 1), 4)
        out["agreement"] = {m: {**pool(r), "majmin_where_reference_stable":
                                round(stable[m][0] / max(stable[m][1], 1), 4)}
                            for m, r in vs_ref.items()}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
