"""BTC: the bi-directional transformer chord recogniser (Park et al., ISMIR 2019).

A re-implementation of the network of the public BTC-ISMIR19 code (MIT
licence) whose parameter names and shapes are those of the original
checkpoints (``btc_model.pt``: 25 major/minor classes,
``btc_model_large_voca.pt``: 170 classes), so an original state dict loads
with ``strict=True`` and the eval-mode forward computes what the original
computes:

* input: log-CQT frames ``log(|C| + 1e-6)`` (144 bins, 24 per octave, hop
  2048 at 22050 Hz), normalised with one global mean/std stored in the
  checkpoint, cut into 108-frame windows (the last one zero-padded after
  normalisation); windows are independent;
* ``embedding_proj`` (no bias) + sinusoidal timing signal (tensor2tensor
  style: sines then cosines, timescales 1 .. 1e4);
* 8 bi-directional layers; each runs a forward-masked and a
  backward-masked pre-norm self-attention block on the same input and mixes
  the two with a linear layer on their concatenation;
  a block is ``x = x + MHA(LN(x)); y = x + FFN(LN(x))`` where the FFN is
  conv(k=3) -> ReLU -> conv(k=3) -> ReLU (the ReLU after the last conv is
  part of the original), and LN is ``gamma * (x - mean) / (std + 1e-6) +
  beta`` with the unbiased std;
* a final LN and a linear output projection. (The original output layer
  also owns an LSTM that its forward never uses; it is kept so that state
  dicts match.)

``forward`` follows the keychords conventions: ``(B, 1, 144, T)`` un-normalised
log-CQT in, ``{"chord": (B, T, 170)}`` logits in :mod:`model_zoo.vocab` order
out. Classes the 25-class model cannot output get :data:`IMPOSSIBLE_LOGIT`.

Frame timing note: the original computes its CQT in 10 s chunks of 108
frames each and reports frame ``i`` at ``i * 10 / 108`` s (not ``i * 2048 /
22050`` s); the difference is the features module's business.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import vocab

# Logit given to vocabulary classes a model cannot output (finite, so that
# log-softmax and KL terms stay finite; fits in float16).
IMPOSSIBLE_LOGIT = -1.0e4

_LN_EPS = 1e-6

# The original's class orders (utils/mir_eval_modules.py: idx2chord and
# idx2voca_chord; utils/chords.py: convert_to_id / convert_to_id_voca).
_BTC_ROOTS = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
_BTC_QUALITIES = ("min", "maj", "dim", "aug", "min6", "maj6", "min7",
                  "minmaj7", "maj7", "7", "dim7", "hdim7", "sus2", "sus4")


def original_labels(num_classes: int) -> list[str]:
    """The original model's output labels, in its class index order.

    25 classes: ``C, C:min, C#, C#:min, ..., B, B:min, N`` (index
    ``2 * root + is_minor``, N = 24). 170 classes: index ``14 * root +
    quality`` with qualities ``min, maj, dim, aug, min6, maj6, min7, minmaj7,
    maj7, 7, dim7, hdim7, sus2, sus4``, then X = 168 and N = 169.
    """
    if num_classes == 25:
        labels = []
        for r in _BTC_ROOTS:
            labels += [f"{r}:maj", f"{r}:min"]
        return labels + ["N"]
    if num_classes == 170:
        return ([f"{r}:{q}" for r in _BTC_ROOTS for q in _BTC_QUALITIES]
                + ["X", "N"])
    raise ValueError(f"BTC has 25 or 170 classes, not {num_classes}")


def timing_signal(length: int, channels: int, min_timescale: float = 1.0,
                  max_timescale: float = 1.0e4) -> torch.Tensor:
    """``(1, length, channels)`` sinusoid positions (computed in float64)."""
    position = np.arange(length, dtype=np.float64)
    n = channels // 2
    step = math.log(max_timescale / min_timescale) / max(n - 1, 1)
    inv = min_timescale * np.exp(np.arange(n, dtype=np.float64) * -step)
    scaled = position[:, None] * inv[None, :]
    sig = np.concatenate([np.sin(scaled), np.cos(scaled)], axis=1)
    sig = np.pad(sig, [(0, 0), (0, channels % 2)])
    return torch.from_numpy(sig.reshape(1, length, channels)).float()


class _LayerNorm(nn.Module):
    """The original's layer norm: unbiased std, eps added to the std."""

    def __init__(self, features: int, eps: float = _LN_EPS):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(features))
        self.beta = nn.Parameter(torch.zeros(features))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(-1, keepdim=True)
        std = x.std(-1, keepdim=True)
        return self.gamma * (x - mean) / (std + self.eps) + self.beta


class _MultiHeadAttention(nn.Module):
    def __init__(self, hidden: int, key_depth: int, value_depth: int,
                 heads: int, direction: str, dropout: float):
        super().__init__()
        if key_depth % heads or value_depth % heads:
            raise ValueError("key/value depth must be divisible by the number of heads")
        if direction not in ("forward", "backward"):
            raise ValueError(f"unknown attention direction {direction!r}")
        self.heads = heads
        self.direction = direction
        self.scale = (key_depth // heads) ** -0.5
        self.query_linear = nn.Linear(hidden, key_depth, bias=False)
        self.key_linear = nn.Linear(hidden, key_depth, bias=False)
        self.value_linear = nn.Linear(hidden, value_depth, bias=False)
        self.output_linear = nn.Linear(value_depth, hidden, bias=False)
        self.dropout = nn.Dropout(dropout)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        return x.view(b, t, self.heads, d // self.heads).permute(0, 2, 1, 3)

    def mask(self, t: int, like: torch.Tensor) -> torch.Tensor:
        """Additive ``(t, t)`` mask: forward sees frames <= i, backward >= i."""
        m = torch.full((t, t), float("-inf"), dtype=like.dtype, device=like.device)
        return m.triu(1) if self.direction == "forward" else m.tril(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = self._split(self.query_linear(x)) * self.scale
        k = self._split(self.key_linear(x))
        v = self._split(self.value_linear(x))
        logits = q @ k.transpose(-1, -2) + self.mask(x.shape[1], q)
        weights = self.dropout(torch.softmax(logits, dim=-1))
        ctx = weights @ v
        b, h, t, d = ctx.shape
        ctx = ctx.permute(0, 2, 1, 3).reshape(b, t, h * d)
        return self.output_linear(ctx)


class _Conv(nn.Module):
    """Conv1d over time on ``(B, T, C)``, zero-padded on both sides."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int = 3):
        super().__init__()
        self.padding = (kernel_size // 2, (kernel_size - 1) // 2)
        self.conv = nn.Conv1d(c_in, c_out, kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x.transpose(1, 2), self.padding)).transpose(1, 2)


class _FeedForward(nn.Module):
    """conv -> ReLU -> dropout -> conv -> ReLU -> dropout (as the original)."""

    def __init__(self, hidden: int, filter_size: int, dropout: float):
        super().__init__()
        self.layers = nn.ModuleList([_Conv(hidden, filter_size), _Conv(filter_size, hidden)])
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = self.dropout(torch.relu(layer(x)))
        return x


class _AttentionBlock(nn.Module):
    def __init__(self, hidden: int, key_depth: int, value_depth: int, filter_size: int,
                 heads: int, direction: str, layer_dropout: float,
                 attention_dropout: float, relu_dropout: float):
        super().__init__()
        self.multi_head_attention = _MultiHeadAttention(
            hidden, key_depth, value_depth, heads, direction, attention_dropout)
        self.positionwise_convolution = _FeedForward(hidden, filter_size, relu_dropout)
        self.dropout = nn.Dropout(layer_dropout)
        self.layer_norm_mha = _LayerNorm(hidden)
        self.layer_norm_ffn = _LayerNorm(hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(x + self.multi_head_attention(self.layer_norm_mha(x)))
        return self.dropout(x + self.positionwise_convolution(self.layer_norm_ffn(x)))


class _BiLayer(nn.Module):
    """Forward- and backward-masked blocks on the same input, then a linear mix."""

    def __init__(self, hidden: int, key_depth: int, value_depth: int, filter_size: int,
                 heads: int, layer_dropout: float, attention_dropout: float,
                 relu_dropout: float):
        super().__init__()
        blocks = [_AttentionBlock(hidden, key_depth, value_depth, filter_size, heads,
                                  direction, layer_dropout, attention_dropout, relu_dropout)
                  for direction in ("forward", "backward")]
        self.attn_block, self.backward_attn_block = blocks
        self.linear = nn.Linear(2 * hidden, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(torch.cat([self.attn_block(x), self.backward_attn_block(x)], dim=-1))


class _Encoder(nn.Module):
    def __init__(self, feature_size: int, hidden: int, layers: int, heads: int,
                 key_depth: int, value_depth: int, filter_size: int, timestep: int,
                 input_dropout: float, layer_dropout: float, attention_dropout: float,
                 relu_dropout: float):
        super().__init__()
        self.register_buffer("timing_signal", timing_signal(timestep, hidden), persistent=False)
        self.embedding_proj = nn.Linear(feature_size, hidden, bias=False)
        self.self_attn_layers = nn.ModuleList([
            _BiLayer(hidden, key_depth, value_depth, filter_size, heads,
                     layer_dropout, attention_dropout, relu_dropout)
            for _ in range(layers)])
        self.layer_norm = _LayerNorm(hidden)
        self.input_dropout = nn.Dropout(input_dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, t, feature_size)`` normalised frames, ``t <= timestep``."""
        x = self.embedding_proj(self.input_dropout(x))
        x = x + self.timing_signal[:, : x.shape[1]].to(x.dtype)
        for layer in self.self_attn_layers:
            x = layer(x)
        return self.layer_norm(x)


class _OutputLayer(nn.Module):
    def __init__(self, hidden: int, num_classes: int):
        super().__init__()
        self.output_projection = nn.Linear(hidden, num_classes)
        # Present in the original checkpoints, never used by their forward.
        self.lstm = nn.LSTM(input_size=hidden, hidden_size=hidden // 2,
                            batch_first=True, bidirectional=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_projection(x)


class BTC(nn.Module):
    """BTC with original parameter names; see the module docstring."""

    task = "chord"
    # librosa 0.6/0.7 cqt as BTC used it: classic Q, reflect padding, sparsified filters.
    FEATURES = {
        "sample_rate": 22050, "hop_length": 2048, "fmin": 32.70319566257483,
        "n_bins": 144, "bins_per_octave": 24, "harmonics": [1],
        "scaling": "log", "log_eps": 1e-6, "q_style": "classic",
        "pad_mode": "reflect", "sparsity": 0.01,
    }

    def __init__(self, num_classes: int = 170, feature_size: int = 144,
                 hidden_size: int = 128, num_layers: int = 8, num_heads: int = 4,
                 total_key_depth: int = 128, total_value_depth: int = 128,
                 filter_size: int = 128, timestep: int = 108,
                 input_dropout: float = 0.2, layer_dropout: float = 0.2,
                 attention_dropout: float = 0.2, relu_dropout: float = 0.2):
        super().__init__()
        labels = original_labels(int(num_classes))
        self.config = {
            "num_classes": int(num_classes), "feature_size": int(feature_size),
            "hidden_size": int(hidden_size), "num_layers": int(num_layers),
            "num_heads": int(num_heads), "total_key_depth": int(total_key_depth),
            "total_value_depth": int(total_value_depth), "filter_size": int(filter_size),
            "timestep": int(timestep), "input_dropout": float(input_dropout),
            "layer_dropout": float(layer_dropout),
            "attention_dropout": float(attention_dropout),
            "relu_dropout": float(relu_dropout),
        }
        self.num_classes = int(num_classes)
        self.feature_size = int(feature_size)
        self.timestep = int(timestep)
        self.self_attn_layers = _Encoder(
            feature_size, hidden_size, num_layers, num_heads, total_key_depth,
            total_value_depth, filter_size, timestep, input_dropout,
            layer_dropout, attention_dropout, relu_dropout)
        self.output_layer = _OutputLayer(hidden_size, num_classes)
        # Global normalisation of the checkpoint (one value per bin; the
        # original stores a scalar, which is broadcast).
        self.register_buffer("feature_mean", torch.zeros(feature_size))
        self.register_buffer("feature_std", torch.ones(feature_size))
        perm = vocab.permutation_from_labels(labels)
        if len(set(perm)) != len(perm):
            raise ValueError("BTC label order does not map one-to-one onto the vocabulary")
        self.register_buffer("class_index", torch.tensor(perm, dtype=torch.long),
                             persistent=False)
        # An original-layout state dict has no normalisation entries: allow
        # loading one strictly (the buffers keep their values) when both are absent.
        self.register_load_state_dict_post_hook(_allow_missing_normalisation)

    @property
    def labels(self) -> list[str]:
        """The original class order (see :func:`original_labels`)."""
        return original_labels(self.num_classes)

    def set_normalisation(self, mean: Any, std: Any) -> None:
        """Set the feature mean/std (scalars or one value per CQT bin)."""
        for name, value in (("feature_mean", mean), ("feature_std", std)):
            t = torch.as_tensor(np.asarray(value, dtype=np.float64)).float()
            buf = getattr(self, name)
            buf.copy_(t.to(buf.device).expand_as(buf))

    def native_logits(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 1, F, T)`` log-CQT -> ``(B, T, num_classes)`` in the original order."""
        if x.dim() != 4 or x.shape[1] != 1 or x.shape[2] != self.feature_size:
            raise ValueError(f"BTC expects (B, 1, {self.feature_size}, T) log-CQT input, "
                             f"got {tuple(x.shape)}")
        b, _, f, t = x.shape
        w = self.timestep
        frames = x[:, 0].transpose(1, 2)
        frames = (frames - self.feature_mean) / self.feature_std
        n = max(1, -(-t // w))
        frames = F.pad(frames, (0, 0, 0, n * w - t))      # zeros after normalising
        hidden = self.self_attn_layers(frames.reshape(b * n, w, f))
        logits = self.output_layer(hidden)
        return logits.reshape(b, n * w, -1)[:, :t]

    def to_vocab(self, logits: torch.Tensor) -> torch.Tensor:
        """Original-order logits ``(..., num_classes)`` -> ``(..., 170)`` ours."""
        out = logits.new_full((*logits.shape[:-1], vocab.N_CLASSES), IMPOSSIBLE_LOGIT)
        out[..., self.class_index] = logits
        return out

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"chord": self.to_vocab(self.native_logits(x))}


def _allow_missing_normalisation(module: nn.Module, incompatible) -> None:
    missing = incompatible.missing_keys
    names = [k for k in missing if k.endswith("feature_mean") or k.endswith("feature_std")]
    if len(names) == 2:
        for k in names:
            missing.remove(k)
