"""Split the real (unlabelled) music into training and held-out lists, by package.

Reads the folder ``shared/data/get_unlabeled_audio.sh`` filled (one
sub-folder per Debian package) and writes ``unlabeled_v2_train.txt`` and
``unlabeled_v2_heldout.txt`` (paths relative to that folder, sorted)::

    python training/real_split.py /work/data/unlabeled --link /work/data

Held out, never trained on:

* every track of the packages in :data:`HELDOUT_PACKAGES` (chosen by hand
  among the packages the v1 models never saw, spread over the genres of
  :data:`GENRES`), and
* the 20 tracks of ``unlabeled_heldout.txt`` (v1), so that the v1 held-out
  figures stay comparable (their packages' other tracks stay in training,
  as in v1).

Files that cannot be opened as audio are left out of both lists (printed).
The lists depend only on the folder's contents, so rerunning gives the same
files. ``--link DIR`` also makes ``DIR/real_train`` and ``DIR/real_heldout``
(symlinks, as ``link_set.py`` names them).
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training import link_set

HERE = Path(__file__).resolve().parent
AUDIO_EXTENSIONS = (".ogg", ".opus", ".flac", ".mp3", ".wav")
V1_HELDOUT = HERE / "unlabeled_heldout.txt"

# Main style of each package's music (judged from titles and listening notes;
# many games mix styles, this is the dominant one).
GENRES = {
    "adonthell-data": "orchestral", "amoebax-data": "pop", "ardentryst": "orchestral",
    "berusky2-data": "electronic", "btanks-data": "rock", "colobot-common-sounds": "electronic",
    "davegnukem-data": "chiptune", "drascula-music": "orchestral", "enigma-data": "electronic",
    "extremetuxracer-data": "pop", "fillets-ng-data": "ambient", "flare-game": "orchestral",
    "freecol": "folk", "freedroidrpg-data": "electronic", "freeorion-data": "orchestral",
    "fretsonfire-songs-muldjord": "rock", "fretsonfire-songs-sectoid": "rock",
    "frozen-bubble-data": "pop", "hedgewars-data": "folk", "hex-a-hop-data": "ambient",
    "hyperrogue-music": "ambient", "lordsawar-data": "orchestral",
    "marsshooter-data": "electronic", "megaglest-data": "orchestral", "miceamaze": "electronic",
    "naev-data": "electronic", "neverball-common": "pop", "openclonk-data": "folk",
    "pathological": "classical", "pinball-table-gnu-data": "rock",
    "planetblupi-music-ogg": "pop", "pushover-data": "electronic",
    "redeclipse-data": "rock", "singularity-music": "ambient",
    "starfighter-data": "electronic", "supertux-data": "chiptune",
    "supertuxkart-data": "pop", "trackballs-data": "electronic", "ufoai-music": "orchestral",
    "unknown-horizons": "folk", "warmux-data": "electronic", "warzone2100-music": "electronic",
    "wesnoth-1.16-music": "orchestral", "widelands-data": "folk", "xmoto-data": "rock",
    "zaz-data": "electronic",
}
# ~9 % of the hours as whole packages, none of them in the v1 training lists;
# with the v1 held-out tracks ~15 %.
HELDOUT_PACKAGES = (
    "starfighter-data",   # electronic (techno, trance)
    "trackballs-data",    # electronic (c64 revival, dance)
    "davegnukem-data",    # chiptune / 8-bit
    "btanks-data",        # rock / chiptune
    "redeclipse-data",    # rock / electronic
    "megaglest-data",     # orchestral / world
    "flare-game",         # orchestral
    "frozen-bubble-data", # pop
)


def audio_duration(path: Path) -> float | None:
    """Duration in seconds (container header), None when the file does not open."""
    import av
    try:
        with av.open(str(path)) as container:
            if container.duration:
                return container.duration / 1e6
            stream = container.streams.audio[0]
            return float(stream.duration * stream.time_base)
    except Exception:  # noqa: BLE001 -- any decoder error: not usable audio
        return None


def scan(root: Path) -> dict[str, float | None]:
    """``{relative path: duration or None}`` for every audio file one folder down."""
    return {str(p.relative_to(root)): audio_duration(p)
            for p in sorted(root.glob("*/*")) if p.suffix.lower() in AUDIO_EXTENSIONS}


def split_files(files, v1_heldout, heldout_packages=HELDOUT_PACKAGES) -> dict[str, list[str]]:
    """``{"train": [...], "heldout": [...]}``: by package, plus the v1 held-out tracks."""
    held = set(v1_heldout)
    out = {"train": [], "heldout": []}
    for rel in sorted(files):
        package = rel.split("/", 1)[0]
        out["heldout" if package in heldout_packages or rel in held else "train"].append(rel)
    return out


def summary(parts: dict[str, list[str]], durations: dict[str, float]) -> str:
    """Tracks and hours per split and genre."""
    lines = []
    total = sum(durations[r] for rels in parts.values() for r in rels)
    for name, rels in parts.items():
        by_genre = defaultdict(float)
        for r in rels:
            by_genre[GENRES.get(r.split("/", 1)[0], "other")] += durations[r]
        hours = sum(by_genre.values()) / 3600
        lines.append(f"{name}: {len(rels)} tracks, {hours:.2f} h ({hours * 3600 / total:.1%}); "
                     + ", ".join(f"{g} {s / 3600:.2f} h" for g, s in sorted(by_genre.items())))
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src", help="the folder get_unlabeled_audio.sh filled")
    ap.add_argument("--lists", default=str(HERE), help="where the two lists go")
    ap.add_argument("--link", metavar="DIR", help="also make DIR/real_train, DIR/real_heldout")
    args = ap.parse_args(argv)
    src = Path(args.src)
    durations = scan(src)
    bad = sorted(r for r, d in durations.items() if d is None)
    for r in bad:
        print(f"left out (does not open): {r}", file=sys.stderr)
    good = {r: d for r, d in durations.items() if d is not None}
    v1 = [ln.strip() for ln in V1_HELDOUT.read_text().splitlines() if ln.strip()]
    parts = split_files(good, v1)
    for name, rels in parts.items():
        Path(args.lists, f"unlabeled_v2_{name}.txt").write_text("".join(r + "\n" for r in rels))
    print(summary(parts, good))
    if args.link:
        for name in parts:
            link_set.main([str(Path(args.lists, f"unlabeled_v2_{name}.txt")), str(src),
                           str(Path(args.link, f"real_{name}"))])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
