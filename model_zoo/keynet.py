"""keynet: Korzeniowski & Widmer's all-convolutional key classifier (ISMIR 2018).

Nine convolutions (each bias-free Conv2d -> BatchNorm2d -> ELU, 'same'
padding) with three 2x2 max-pools, then a global average over frequency
and time: a log-CQT of any length in, 24 key logits out. The released
checkpoint (``Menschomat/MusicalKeyCNN``, MIT) lists its classes in
Camelot order (:data:`CAMELOT_ORDER`); its importer
(:func:`model_zoo.importers.import_keynet`) permutes the last
layer's channels once so that this network answers in
:mod:`model_zoo.keys` order.

Front end: librosa's CQT at 44.1 kHz, hop 8820, 105 bins from 65 Hz at 24
per octave, ``log1p``, top two bins dropped. :data:`FEATURES` computes the
same at 22.05 kHz, hop 4410 (see its comment).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import keys

# The tagger's decoder (FFmpeg) mixes stereo to mono as (L + R) / sqrt 2, librosa
# as (L + R) / 2; a scale=True CQT at half the rate is 1 / sqrt 2 of the 44.1 kHz
# one. The two cancel for stereo tracks, hence gain 1 (mono files come out
# sqrt 2 quieter than keynet saw them). sparsity 0.01 is librosa's default.
FEATURES = {
    "sample_rate": 22050, "hop_length": 4410, "fmin": 65.0, "n_bins": 105,
    "bins_per_octave": 24, "harmonics": [1], "scaling": "log1p", "log1p_gain": 1.0,
    "sparsity": 0.01, "crop_bins": 103,
}

# Output order of the released checkpoint: index i < 12 is Camelot (i + 1)A,
# i >= 12 is (i - 11)B.
CAMELOT_ORDER = (
    "G#m", "D#m", "A#m", "Fm", "Cm", "Gm", "Dm", "Am", "Em", "Bm", "F#m", "C#m",
    "B", "F#", "C#", "G#", "D#", "A#", "F", "C", "G", "D", "A", "E",
)


def camelot_permutation() -> list[int]:
    """``perm[i]`` = the released checkpoint's output index of our key ``i``."""
    native = [keys.parse_key(k) for k in CAMELOT_ORDER]
    return [native.index(i) for i in range(keys.N_KEYS)]


class ConvBlock(nn.Module):
    """Bias-free Conv2d ('same' padding) -> BatchNorm2d -> ELU."""

    def __init__(self, cin: int, cout: int, kernel: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.elu(self.bn(self.conv(x)))


class KeyNet(nn.Module):
    """``forward((B, 1, 103, T) log-CQT) -> {"key": logits (B, 24)}``.

    ``lengths`` (frames per clip) lets clips of different lengths share a
    zero-padded batch: activations past each clip's end are zeroed after
    every layer and the final average covers its own frames only, so each
    clip's logits equal those of a pass over it alone.
    """

    task = "key"
    batches_tracks = True     # forward_many: whole tracks of different lengths, masked

    def __init__(self, n_filters: int = 20, n_classes: int = keys.N_KEYS,
                 dropout: float = 0.5):
        super().__init__()
        self.config = dict(n_filters=n_filters, n_classes=n_classes, dropout=dropout)
        nf = n_filters
        plan = [(1, nf, 5), (nf, nf, 3), "pool", (nf, 2 * nf, 3), (2 * nf, 2 * nf, 3), "pool",
                (2 * nf, 4 * nf, 3), (4 * nf, 4 * nf, 3), "pool",
                (4 * nf, 8 * nf, 3), "drop", (8 * nf, 8 * nf, 3), "drop", (8 * nf, n_classes, 1)]
        self.layers: list[str] = []
        n_conv = 0
        for step in plan:
            if isinstance(step, tuple):
                n_conv += 1
                self.add_module(f"conv{n_conv}", ConvBlock(*step))
                self.layers.append(f"conv{n_conv}")
            else:
                self.layers.append(step)
        self.dropout = dropout

    def forward(self, x: torch.Tensor,
                lengths: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        for name in self.layers:
            if name == "pool":
                x = F.max_pool2d(x, 2)
                x = F.dropout2d(x, self.dropout, self.training)
                lengths = None if lengths is None else lengths // 2
            elif name == "drop":
                x = F.dropout2d(x, self.dropout, self.training)
            else:
                x = getattr(self, name)(x)
            if lengths is not None:
                x = x * _time_mask(lengths, x.shape[-1], x.dtype)
        if lengths is None:
            return {"key": x.mean(dim=(-2, -1))}
        frames = (lengths * x.shape[-2]).clamp_min(1).to(x.dtype)
        return {"key": x.sum(dim=(-2, -1)) / frames[:, None]}

    def forward_many(self, feats: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """Whole clips of different lengths (each ``(1, 1, F, T_i)``) in one batch."""
        lengths = torch.tensor([f.shape[-1] for f in feats], device=feats[0].device)
        x = torch.cat([F.pad(f, (0, int(lengths.max()) - f.shape[-1])) for f in feats])
        out = self(x, lengths)["key"]
        return [{"key": out[i: i + 1]} for i in range(len(feats))]


def _time_mask(lengths: torch.Tensor, n: int, dtype: torch.dtype) -> torch.Tensor:
    """``(B, 1, 1, n)``: 1 on each clip's own frames, 0 past its end."""
    t = torch.arange(n, device=lengths.device)
    return (t[None] < lengths[:, None]).to(dtype)[:, None, None]
