"""A picture of a track (``keychords show FILE --plot OUT.png|.svg``; needs matplotlib).

Top lane: the key regions. Main lane: the chord segments on a time axis,
coloured by harmonic function in the key at their time
(:mod:`tagger.functions`), their height the model's confidence, secondary
dominants and borrowed chords marked with a hatch. The title gives the key,
the loop, the tuning and the key confidence.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from model_zoo import keys  # noqa: E402

from .chart import tuning_text  # noqa: E402
from .functions import harmonic_function  # noqa: E402
from .result import TrackResult  # noqa: E402

COLOURS = {
    "tonic": "#2b7bba", "subdominant": "#3aa655", "dominant": "#d9412b",
    "secondary": "#f28e2b", "borrowed": "#8e5ab5", "chromatic": "#8c8c8c", "none": "#e6e6e6",
}
HATCH = {"secondary": "//", "borrowed": "xx"}
KEY_COLOURS = plt.get_cmap("Set3").colors
WIDTH_IN, HEIGHT_IN, DPI = 12.0, 3.6, 100


def _title(r: TrackResult, flats: bool | None) -> str:
    key = "-" if r.key_index is None else keys.long_key(r.key_index, flats)
    return (f"{key} (confidence {r.key_confidence:.2f})   loop: {r.chords or '-'}   "
            f"{r.progression or ''}   tuning {tuning_text(r.tuning)}")


def _key_lane(ax, r: TrackResult, flats: bool | None) -> None:
    for g in r.key_regions:
        ax.broken_barh([(g.start, g.end - g.start)], (1.15, 0.3),
                       color=KEY_COLOURS[g.key % len(KEY_COLOURS)], edgecolor="white")
        ax.text((g.start + g.end) / 2, 1.3, keys.short_key(g.key, flats),
                ha="center", va="center", fontsize=9, weight="bold")


def _chord_lane(ax, r: TrackResult, flats: bool | None) -> None:
    for s in r.segments:
        mid = (s.start + s.end) / 2
        func = harmonic_function(s.index, r.key_at(mid))
        ax.broken_barh([(s.start, s.end - s.start)], (0, max(0.15, float(s.confidence))),
                       facecolor=COLOURS[func], edgecolor="white", linewidth=0.5,
                       hatch=HATCH.get(func))
        if s.end - s.start >= r.duration / 80 and func != "none":
            ax.text(mid, 0.05, r.chord_label(s.index, mid, flats, harte=False),
                    ha="center", va="bottom", fontsize=7, rotation=90, color="white")


def figure(r: TrackResult, flats: bool | None = None):
    """The matplotlib figure of ``r`` (caller closes it)."""
    fig, ax = plt.subplots(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI)
    _key_lane(ax, r, flats)
    _chord_lane(ax, r, flats)
    ax.set_xlim(0, max(r.duration, 1e-3))
    ax.set_ylim(0, 1.5)
    ax.set_yticks([0.5, 1.3], ["chords\n(height: confidence)", "key"])
    ax.set_xlabel("time (s)")
    ax.set_title(_title(r, flats), fontsize=9, loc="left")
    ax.legend(handles=[Patch(facecolor=c, hatch=HATCH.get(f), label=f)
                       for f, c in COLOURS.items() if f != "none"],
              loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=6, fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def save_plot(r: TrackResult, out, flats: bool | None = None) -> None:
    """Draw ``r`` to ``out`` (.png or .svg)."""
    if not str(out).lower().endswith((".png", ".svg")):
        raise ValueError("the picture must be a .png or .svg file")
    fig = figure(r, flats)
    try:
        fig.savefig(out)
    finally:
        plt.close(fig)
