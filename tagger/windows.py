"""Where a windowed chord model's overlapping windows go on a track.

A model whose output frame depends on at most ``margin`` frames on each side
gives, on windows placed by :func:`plan`, exactly the frames of one pass over
the whole track: each window keeps its centre, and windows are shifted to stay
inside the track at its ends, where a whole-track pass sees the true edge too.
"""

from __future__ import annotations

from typing import NamedTuple


class Window(NamedTuple):
    start: int   # first input frame of the window
    keep: int    # first frame kept, in track frames
    length: int  # frames kept

    @property
    def offset(self) -> int:
        """Position of the first kept frame inside the window."""
        return self.keep - self.start


def plan(n_frames: int, window: int, margin: int) -> list[Window]:
    """Windows of ``window`` frames covering ``n_frames``, each keeping frames at
    least ``margin`` from its inner edges. A track of at most ``window`` frames is
    one window of its own length."""
    if n_frames <= window:
        return [Window(0, 0, n_frames)]
    step = window - 2 * margin
    if step < 1:
        raise ValueError(f"window of {window} frames has no centre with margins of {margin}")
    return [Window(min(max(s - margin, 0), n_frames - window), s, min(step, n_frames - s))
            for s in range(0, n_frames, step)]


def at_least(window: int, margin: int) -> int:
    """``window`` lengthened, where needed, to four ``margin`` s: at least half of
    every window is then kept, so a long receptive field costs at most twice a
    whole-track pass."""
    return max(window, 4 * margin)
