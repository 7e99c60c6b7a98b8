import pytest

from tagger.windows import Window, plan


@pytest.mark.parametrize("n", [1, 100, 512, 513, 700, 1000, 1024, 5000])
def test_windows_keep_every_frame_once_with_its_context(n):
    window, margin = 512, 64
    wins = plan(n, window, margin)
    kept = [t for w in wins for t in range(w.keep, w.keep + w.length)]
    assert kept == list(range(n))
    for w in wins:
        size = min(window, n)
        assert 0 <= w.start and w.start + size <= n          # inside the track
        assert 0 <= w.offset and w.offset + w.length <= size
        # a kept frame is `margin` from a window edge, or the window edge is the track's
        assert w.offset >= margin or w.start == 0
        assert size - (w.offset + w.length) >= margin or w.start + size == n


def test_short_track_is_one_window_of_its_own_length():
    assert plan(300, 512, 64) == [Window(0, 0, 300)]


def test_window_without_a_centre_is_refused():
    with pytest.raises(ValueError, match="no centre"):
        plan(1000, 100, 50)
