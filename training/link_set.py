"""Make a folder of symlinks to the files named in a list (one path per line,
relative to the folder ``get_unlabeled_audio.sh`` filled)::

    python training/link_set.py training/unlabeled_train.txt /work/data/unlabeled /work/data/unlabeled_subset
    python training/link_set.py training/unlabeled_heldout.txt /work/data/unlabeled /work/data/heldout_real

``unlabeled_train.txt``: the 39 real tracks (2.81 h) used for distillation and
key training; ``unlabeled_heldout.txt``: 20 other tracks of the same packages
(two to three per package, chosen by a hash of the file name; none is another
stem or version of a training track) that no model ever trained on.
"""

import sys
from pathlib import Path


def main(argv=None) -> int:
    lst, src, dest = (argv or sys.argv[1:])[:3]
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    missing = 0
    for line in Path(lst).read_text().splitlines():
        rel = line.strip()
        if not rel:
            continue
        target = Path(src) / rel
        if not target.exists():
            print(f"missing: {target}", file=sys.stderr)
            missing += 1
            continue
        link = dest / rel.replace("/", "__", 1)
        if not link.exists():
            link.symlink_to(target.resolve())
    return 1 if missing else 0


if __name__ == "__main__":
    raise SystemExit(main())
