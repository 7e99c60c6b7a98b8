"""S-KEY's ChromaNet (Kong et al., ICASSP 2025; STONE, ISMIR 2024), in torch.

A 7-stage ConvNeXt over a 7-octave CQT (12 bins/octave, hop 512 at 22.05
kHz): each stage halves time (parameter-free LayerNorm, 1x2 strided conv,
GELU) and applies a ConvNeXt block; the octaves are then averaged into 12
pitch classes, time is averaged, a 1x1 conv gives 2 channels (the two
modes) x 12 positions = 24 logits, normalised by a non-affine BatchNorm.

The network's native output positions are whatever its self-supervised
training anchored them to; ``output_permutation`` (a config entry: our key
index -> native index) maps them onto :mod:`model_zoo.keys` order once. The
official checkpoint's order is :data:`model_zoo.importers.SKEY_RELEASED_ORDER`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

FEATURES = {
    "sample_rate": 22050, "hop_length": 512, "fmin": 27.5, "n_bins": 99,
    "bins_per_octave": 12, "harmonics": [1], "scaling": "skey_db", "top_db": 80.0,
    "q_style": "classic", "pad_mode": "reflect", "normalize_peak": True,
    "crop_bins": 84,
}
SEGMENT_SECONDS = 15.0


def _norm(x: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(x, x.shape[1:])


class TimeDownsample(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, (1, 2), stride=(1, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.conv(_norm(x)))


class ConvNeXtBlock(nn.Module):
    """Depthwise kxk conv (replicate padding), LayerNorm, MLP x4, layer scale."""

    def __init__(self, dim: int, kernel: int, drop_path: float = 0.1):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel, padding=kernel // 2, groups=dim,
                                padding_mode="replicate")
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(0.1 * torch.ones(dim))
        self.drop_path = drop_path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = _norm(self.dwconv(x)).permute(0, 2, 3, 1)
        y = (self.gamma * self.pwconv2(F.gelu(self.pwconv1(y)))).permute(0, 3, 1, 2)
        if self.training and self.drop_path > 0:  # stochastic depth, per sample
            keep = 1 - self.drop_path
            mask = y.new_empty(y.shape[0], 1, 1, 1).bernoulli_(keep) / keep
            y = y * mask
        return x + y


class ChromaNet(nn.Module):
    """``forward((B, H, 84, T) S-KEY CQT) -> {"key": logits (B, 24)}`` (our order)."""

    task = "key"
    FEATURES = FEATURES

    def __init__(self, n_harmonics: int = 1, channels=(2, 3, 40, 40, 30, 10, 3),
                 kernels=(7, 7, 7, 7, 7, 5, 5), bins_per_octave: int = 12,
                 drop_path: float = 0.1, temperature: float = 1.0,
                 output_permutation: list[int] | None = None):
        super().__init__()
        self.config = dict(n_harmonics=n_harmonics, channels=list(channels),
                           kernels=list(kernels), bins_per_octave=bins_per_octave,
                           drop_path=drop_path, temperature=temperature,
                           output_permutation=output_permutation)
        cin = n_harmonics
        self.time_downsampling_blocks = nn.ModuleList()
        self.convnext_blocks = nn.ModuleList()
        for c, k in zip(channels, kernels):
            self.time_downsampling_blocks.append(TimeDownsample(cin, c))
            self.convnext_blocks.append(ConvNeXtBlock(c, k, drop_path))
            cin = c
        self.bins_per_octave = bins_per_octave
        self.temperature = temperature
        self.classifier = nn.Conv2d(cin, 2, 1)
        self.batch_norm = nn.BatchNorm2d(2, affine=False)
        perm = output_permutation if output_permutation is not None else range(24)
        self.register_buffer("perm", torch.tensor(list(perm)), persistent=False)

    def native_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, 24)`` in the network's own output order."""
        for down, block in zip(self.time_downsampling_blocks, self.convnext_blocks):
            x = block(down(x))
        b, c, f, t = x.shape
        x = x.reshape(b, c, f // self.bins_per_octave, self.bins_per_octave, t).mean(2)
        x = x.mean(-1, keepdim=True)                       # (B, C, 12, 1)
        x = self.batch_norm(self.classifier(x))
        return x.flatten(1) / self.temperature

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"key": self.native_logits(x).index_select(-1, self.perm)}
