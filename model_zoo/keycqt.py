"""KeyCQT: a small key network that reads the chord student's CQT.

The tagger computes the chord student's front end for every track anyway
(:attr:`model_zoo.student.ChordStudent.FEATURES`: 216 bins from C1 at 36 per
octave, hop 2048 at 22050 Hz, ``log1p`` scaled). A key model with the same
``features`` in its card shares that front end (the engine computes one
front end per distinct feature setting), so its only cost is the network
below, which works on a time-pooled copy of the spectrogram: key is a slow
property, and ``pool`` frames (0.74 s by default) are averaged first.

::

    x (B,1,216,T) -> mean over `pool` frames -> each frame standardised over bins
     -> Conv2d 1->c1, 9 bins x 3 frames, stride 3 bins (72 semitone rows), BN, GELU
     -> depthwise 7 semitones x 3 frames + pointwise c1->c2, BN, GELU
     -> fold octaves into channels: (c2 * 6, 12 pitch classes, T')
     -> pointwise -> c3, BN, GELU
     -> `blocks` residual blocks: depthwise (12 pitch classes, circular) x 3
        frames + pointwise c3->c3, BN, GELU
     -> pointwise c3 -> 2 (major, minor) = frame logits (B, T', 24), our key
        order (position = tonic pitch class, C = 0, as bin 0 is C1)

A clip's key logits are the mean of its frame logits (:meth:`KeyCQT.forward`);
the tagger's key windows are means over the frames of each window of one
whole-track pass (:func:`window_logits`), so a 4-minute track costs one pass,
not one per overlapping window. A transposition by ``s`` semitones moves the
input by ``3 s`` bins; up to octave wrap-around and the edges of the range the
network is equivariant to it, and it is trained with transposed copies.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .student import ChordStudent

FEATURES = dict(ChordStudent.FEATURES)
BINS_PER_SEMITONE = ChordStudent.BINS_PER_SEMITONE
N_SEMITONES = FEATURES["n_bins"] // BINS_PER_SEMITONE        # 72
N_OCTAVES = N_SEMITONES // 12                                # 6
MIN_STD = 0.05   # log1p(100 |C|) units: near-silent frames are not blown up


class _ConvBN(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel, stride=1, padding=0, groups: int = 1):
        super().__init__(nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups,
                                   bias=False),
                         nn.BatchNorm2d(cout), nn.GELU())


class _PitchClassBlock(nn.Module):
    """Residual block over (12 pitch classes, time): a depthwise conv circular in
    pitch, then a pointwise mix."""

    def __init__(self, c: int):
        super().__init__()
        self.depthwise = nn.Conv2d(c, c, (12, 3), padding=0, groups=c, bias=False)
        self.pointwise = _ConvBN(c, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.pad(x, (1, 1, 0, 0))                                # time: zeros
        y = torch.cat([y, y[:, :, :11]], dim=2)                   # pitch: circular
        return x + self.pointwise(self.depthwise(y))


class KeyCQT(nn.Module):
    """``forward((B, 1, 216, T) chord-student CQT) -> {"key": logits (B, 24)}``."""

    task = "key"
    batches_tracks = False
    frame_windows = True      # the engine reads key windows off one whole-track pass
    FEATURES = FEATURES

    def __init__(self, pool: int = 8, c1: int = 16, c2: int = 32, c3: int = 64,
                 blocks: int = 3):
        super().__init__()
        self.config = dict(pool=pool, c1=c1, c2=c2, c3=c3, blocks=blocks)
        self.pool = pool
        self.stem = _ConvBN(1, c1, (9, 3), stride=(BINS_PER_SEMITONE, 1), padding=(4, 1))
        self.mix = nn.Sequential(
            nn.Conv2d(c1, c1, (7, 3), padding=(3, 1), groups=c1, bias=False),
            _ConvBN(c1, c2, 1))
        self.fold = _ConvBN(c2 * N_OCTAVES, c3, 1)
        self.blocks = nn.Sequential(*[_PitchClassBlock(c3) for _ in range(blocks)])
        self.head = nn.Conv2d(c3, 2, 1)

    def frame_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits per pooled frame ``(B, ceil(T / pool), 24)``: majors C..B, minors C..B."""
        b = x.shape[0]
        x = F.avg_pool2d(x, (1, self.pool), ceil_mode=True)
        # Each pooled frame standardised over frequency: level-free, and the same
        # in a window as in the whole track.
        x = (x - x.mean(2, keepdim=True)) / x.std(2, keepdim=True).clamp_min(MIN_STD)
        x = self.mix(self.stem(x))                                # (B, c2, 72, T')
        t = x.shape[-1]
        x = x.reshape(b, -1, N_OCTAVES, 12, t).flatten(1, 2)      # (B, c2*6, 12, T')
        x = self.blocks(self.fold(x))
        return self.head(x).flatten(1, 2).transpose(1, 2)         # (B, T', 24)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"key": self.frame_logits(x).mean(1)}

    @staticmethod
    def receptive_field() -> None:
        return None


def window_logits(frames: torch.Tensor, starts: list[int], length: int,
                  pool: int) -> torch.Tensor:
    """Key logits ``(W, 24)`` of windows of ``length`` CQT frames starting at
    ``starts``, as means of one whole-track pass's ``frames`` ``(T', 24)``."""
    out = []
    for s in starts:
        a = s // pool
        b = max(a + 1, min(frames.shape[0], -(-(s + length) // pool)))
        out.append(frames[a:b].mean(0))
    return torch.stack(out)
