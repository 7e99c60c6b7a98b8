"""Deterministic train / validation / test split of POP909 by song id.

Rule: ``h = int(sha256(SALT + ":" + id)[:16], 16) % 1000``; ``h < 800`` ->
train, ``800 <= h < 900`` -> validation, otherwise test. The id is the
zero-padded three-digit folder name (``"001"``; integers are padded). The
rule depends on the id alone, so a song never moves between splits when
songs are added or removed, and every variant (instrumentation,
transposition, soundfont) of a song lands in the same split.

Validation is for tuning (model selection, decoding parameters); test is
only for reporting numbers once, never for choosing anything.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

SALT = "keychords-pop909-split-v1"
SPLITS = ("train", "validation", "test")
# Cumulative thresholds (per mille) of the split rule.
_BOUNDS = ((800, "train"), (900, "validation"), (1000, "test"))
PROPORTIONS = {"train": 0.8, "validation": 0.1, "test": 0.1}


def normalize_id(song_id: str | int) -> str:
    """``1``, ``"1"``, ``"001"`` -> ``"001"``."""
    text = str(song_id).strip()
    if not text.isdigit():
        raise ValueError(f"not a POP909 song id: {song_id!r}")
    return f"{int(text):03d}"


def split_of(song_id: str | int, salt: str = SALT) -> str:
    """The split (``train``, ``validation`` or ``test``) of one song."""
    return hashed_split(normalize_id(song_id), salt)


def hashed_split(key: str, salt: str) -> str:
    """The split of any string key under the same 80/10/10 rule (other data sets)."""
    h = int(hashlib.sha256(f"{salt}:{key}".encode()).hexdigest()[:16], 16) % 1000
    for bound, name in _BOUNDS:
        if h < bound:
            return name
    raise AssertionError("unreachable")


def song_ids(pop909_root: str | Path) -> list[str]:
    """Sorted ids of the song folders (``NNN/NNN.mid``) under ``pop909_root``."""
    root = Path(pop909_root)
    return sorted(p.name for p in root.iterdir()
                  if p.is_dir() and p.name.isdigit() and (p / f"{p.name}.mid").exists())


def partition(ids, salt: str = SALT) -> dict[str, list[str]]:
    """``{split: sorted ids}`` for the given ids."""
    out: dict[str, list[str]] = {name: [] for name in SPLITS}
    for sid in ids:
        out[split_of(sid, salt)].append(normalize_id(sid))
    return {k: sorted(v) for k, v in out.items()}


def ids_in_split(ids, split: str, salt: str = SALT) -> list[str]:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r} (one of {', '.join(SPLITS)})")
    return partition(ids, salt)[split]


if __name__ == "__main__":  # print the counts
    import sys
    root = sys.argv[1] if len(sys.argv) > 1 else "/work/shared/data/pop909"
    parts = partition(song_ids(root))
    for name in SPLITS:
        print(f"{name:10s} {len(parts[name]):4d}  {' '.join(parts[name][:8])} ...")
