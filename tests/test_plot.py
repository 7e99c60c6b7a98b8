"""The picture of a track (tagger/plot.py): segments where they belong, in their colours."""

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from model_zoo import keys, vocab  # noqa: E402
from tagger import plot  # noqa: E402
from tagger.chords import Segment  # noqa: E402
from tagger.keytrack import KeyRegion  # noqa: E402
from tagger.result import TrackResult  # noqa: E402

CHORDS = [("C:maj", "tonic"), ("F:maj", "subdominant"), ("G:7", "dominant"),
          ("D:7", "secondary"), ("A#:maj", "borrowed"), ("C:maj", "tonic")]


def _result():
    segs = [Segment(4.0 * i, 4.0 * (i + 1), vocab.label_to_index(c), 0.9)
            for i, (c, _) in enumerate(CHORDS)]
    return TrackResult(path="x.flac", duration=24.0, key_index=0, key_confidence=0.8,
                       segments=segs, chords="C F G7 D7 Bb", progression="I IV V7 V7/V bVII",
                       key_regions=[KeyRegion(0.0, 24.0, 0, 0.8)], tuning=-12.0)


def _pixel(fig, img, ax, x, y, around=0):
    px, py = ax.transData.transform((x, y))
    row, col = int(round(img.shape[0] - py)), int(round(px))
    return img[row - around: row + around + 1, col - around: col + around + 1, :3].reshape(-1, 3)


def test_segments_drawn_in_their_function_colours(tmp_path):
    from matplotlib.colors import to_rgb
    from matplotlib.image import imread
    r = _result()
    fig = plot.figure(r)
    out = tmp_path / "t.png"
    fig.savefig(out)
    img = imread(str(out))
    assert img.shape[:2] == (round(plot.HEIGHT_IN * plot.DPI), round(plot.WIDTH_IN * plot.DPI))
    ax = fig.axes[0]
    for i, (_, func) in enumerate(CHORDS):
        # a point inside the bar, off the label and the hatch lines' likely places
        # hatched bars: some pixel of a small patch shows the face colour
        patch = _pixel(fig, img, ax, 4.0 * i + 1.0, 0.75, around=4 if func in plot.HATCH else 0)
        dist = np.abs(patch - to_rgb(plot.COLOURS[func])).max(axis=1)
        assert dist.min() < 0.03, (func, patch[dist.argmin()])
    assert (_pixel(fig, img, ax, 12.0, 1.3) < 0.99).any()         # the key lane is drawn
    np.testing.assert_allclose(_pixel(fig, img, ax, 12.0, 1.05), 1.0)  # blank between lanes
    import matplotlib.pyplot as plt
    plt.close(fig)


def test_svg_and_bad_suffix(tmp_path):
    r = _result()
    plot.save_plot(r, tmp_path / "t.svg")
    assert "<svg" in (tmp_path / "t.svg").read_text()[:500]
    with pytest.raises(ValueError):
        plot.save_plot(r, tmp_path / "t.jpg")
    assert keys.long_key(0) in plot.figure(r).axes[0].get_title(loc="left")
