import numpy as np
import pytest
import torch

from model_zoo import crema, skey
from model_zoo.features import FrontEnd
from tagger.streaming import StreamingMagnitude


@pytest.mark.slow
def test_streaming_equals_whole_clip():
    rng = np.random.default_rng(0)
    y = (rng.standard_normal(22050 * 23) * 0.1).astype(np.float32)
    for cfg in (crema.FEATURES, {**skey.FEATURES, "pad_mode": "constant"}):  # peak-normalised
        fe = FrontEnd(**cfg)
        whole = fe.magnitude(torch.from_numpy(y)[None])[0]
        sm = StreamingMagnitude(fe, block_seconds=4.0)
        for chunk in np.array_split(y, [1000, 5000, 70000, 200000, 300001]):
            sm.feed(chunk)
        got = sm.finish()
        assert got.shape == whole.shape
        scale = float(whole.max())
        # Identical away from the clip's edges; at the very first/last frames the
        # whole-clip path zero-pads each decimated signal separately.
        edge = sm.ctx // fe.hop_length
        assert torch.allclose(got[..., edge:-edge], whole[..., edge:-edge], atol=1e-4 * scale)
        assert torch.allclose(got, whole, atol=5e-2 * scale)
        assert sm.peak == float(np.abs(y).max())


@pytest.mark.slow
def test_streaming_memory_is_bounded():
    fe = FrontEnd(**crema.FEATURES)
    sm = StreamingMagnitude(fe, block_seconds=2.0)
    chunk = np.zeros(22050, dtype=np.float32)
    sizes = []
    for _ in range(40):
        sm.feed(chunk)
        sizes.append(len(sm.buf))
    assert max(sizes[10:]) <= max(sizes[:10]) + 22050
    assert sm.finish().shape[-1] == 1 + 40 * 22050 // 2048


@pytest.mark.slow
def test_tuning_estimating_front_end_analyses_the_whole_track_at_finish():
    from model_zoo import lvchordia
    from model_zoo.tuning import estimate_tuning
    t = np.arange(22050 * 4) / 22050
    y = (0.3 * np.sin(2 * np.pi * 440 * 2 ** (15 / 1200) * t)).astype(np.float32)  # +15 cents
    fe = FrontEnd(**lvchordia.FEATURES)
    sm = StreamingMagnitude(fe, block_seconds=1.0)
    for chunk in np.array_split(y, 7):
        sm.feed(chunk)
    assert sm.frames == []                      # nothing analysed before the tuning is known
    got = sm.finish()
    assert sm.tuning == estimate_tuning(y, 22050, 36) != 0.0
    want = fe.tuned(sm.tuning).magnitude(torch.from_numpy(y)[None])[0]
    assert torch.equal(got, want)
    assert sm.n_samples == len(y)
