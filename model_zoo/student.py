"""The keychords chord student: a fully convolutional frame-wise chord recogniser.

This is the network keychords runs by default. Its weights are distilled from
the crema teacher (:mod:`model_zoo.crema`): stage 1 trains on the teacher's
pseudo-labels over a music library, stage 2 (where ground-truth ``.lab``
files exist) on ground truth plus selective knowledge distillation (Phan et
al. 2026). This module defines only the architecture.

Input and output
----------------
* Input: the front end's output ``x`` ``(B, 1, 216, T)``, see
  :attr:`ChordStudent.FEATURES`: a single-harmonic CQT at 22050 Hz, hop 2048
  (10.77 frames/s, exactly crema's 4096 / 44100, so teacher frames align
  1:1), C1..B6 at 36 bins per octave (3 bins per semitone: a pitch shift by
  ``s`` semitones is a shift of the frequency axis by ``3 s`` bins),
  ``log1p(100 |C|)`` scaling. The network assumes nothing about the absolute
  level: it starts with a learned per-bin normalisation.
* Output: ``{"chord": (B, T, 170)}`` logits in :mod:`model_zoo.vocab` order,
  plus, for each name in ``config["heads"]`` (default all three, as crema),
  ``"root"`` / ``"bass"`` ``(B, T, 13)`` logits (pitch classes C..B, then N)
  and ``"pitch"`` ``(B, T, 12)`` chord-tone logits (use a sigmoid). The
  output has exactly the input's ``T`` for every ``T >= 1``: there is no
  pooling or striding in time anywhere.

Architecture (defaults, i.e. the shipped size)
----------------------------------------------
::

    x (B,1,216,T)
     -> BatchNorm over the 216 bins (per-bin affine: level/tilt normalisation)
     -> Conv2d 1->16, (5 bins x 3 frames), BN, ReLU                 [216 bins]
     -> Conv2d 16->32, (5 bins x 1), stride 3 bins, BN, ReLU        [72 semitones]
        (each output is centred on one semitone, absorbing tuning offsets)
     -> residual Conv2d 32->32, (3 x 3), BN, ReLU                   [72 semitones]
     -> flatten 32 x 72 -> 1x1 Conv1d -> 160, BN, ReLU   (per-frame embedding)
     -> 8 residual dilated blocks, dilations 1 2 4 8 16 1 2 4:
          x + Conv1x1(GELU(BN(Conv1d_k3,dilated(x))))
     -> 1 local self-attention block (pre-LN, 4 heads, each frame attends to
        frames t-24..t+24, learned relative-position bias) + GELU FFN (x2)
     -> LayerNorm = H (B,T,160)
     heads on H: root Linear(13), bass Linear(13), pitch Linear(12)
     chord: Linear(170) on concat[H, softmax(root), softmax(bass), sigmoid(pitch)]

Parameters: 840,888 with the default config (crema's port: 528,139);
without the structured heads 832,178. Temporal receptive field: every output
frame ``t`` depends on input frames ``t - 64 .. t + 64`` (about +-6 s) and on
nothing else (:meth:`ChordStudent.receptive_field`); the stem contributes 2,
the dilated stack 38 and the attention window 24 frames on each side.

Why this shape
--------------
* Speed: no recurrence. Every layer is a convolution or a banded attention
  computed chunk by chunk (cost linear in ``T``), so a whole batch of
  windows, or a whole track, is a handful of large matrix products: fast on
  2 CPU cores and fully parallel on a GPU, where crema's BiGRU must step
  through the track frame by frame. The stem moves to semitone resolution
  after a single cheap full-resolution conv, and only the time-local 1x1
  projection sees all 72 x 32 frequency features (as crema's (1 x 216) conv
  does), so most compute is in the 160-channel temporal stack.
  Measured (``benchmarks/model_speed.py``, 2 CPU threads, 4-min track):
  see the README / benchmark output; it is well over 5x faster than the
  crema port's network.
* Capacity: ~0.84 M parameters, 1.6x crema's, spent where crema spends its
  capacity (a per-frame pitch embedding followed by temporal context), so it
  can match the teacher rather than merely approximate it; the 170-way head
  is conditioned on root / bass / chord-tone heads as in crema (the
  structured outputs are useful distillation targets too, since the teacher
  provides all three).
* Context: chords last a few seconds; +-64 frames covers several chord
  changes each way, enough to disambiguate passing tones, while staying
  well inside the tagger's 256-frame (~24 s) windows so that overlapping
  windows can be stitched exactly. The attention layer adds content-
  dependent pooling over +-2.2 s (e.g. "same harmony as the beat before")
  that dilated convolutions express poorly.
* Robustness: BatchNorm in the stem and the temporal stack folds into an
  affine at inference (no dependence on the other frames of a window or on
  batch composition in eval mode); the first normalisation learns the
  per-bin statistics of ``log1p`` magnitudes, so nothing is assumed about
  the absolute level. Works under ``torch.autocast`` (bf16 / fp16) and on
  CUDA: the attention uses :func:`torch.nn.functional.scaled_dot_product_attention`
  with an additive mask in the query's dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .registry import architecture

HEAD_SIZES = {"root": 13, "bass": 13, "pitch": 12}


class _StemConv(nn.Module):
    """Conv2d + BN + ReLU on ``(B, C, T, F)`` (time, frequency), residual if shapes allow."""

    def __init__(self, cin: int, cout: int, kernel: tuple[int, int],
                 stride: tuple[int, int] = (1, 1), padding: tuple[int, int] = (0, 0)):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.residual = cin == cout and stride == (1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(self.conv(x))
        return F.relu(x + y, inplace=True) if self.residual else F.relu(y, inplace=True)


class _TemporalBlock(nn.Module):
    """Residual dilated conv block on ``(B, C, T)``: receptive field +-``dilation * (k-1)/2``."""

    def __init__(self, channels: int, kernel_size: int, dilation: int, dropout: float):
        super().__init__()
        pad = dilation * (kernel_size - 1) // 2
        self.conv = nn.Conv1d(channels, channels, kernel_size, dilation=dilation,
                              padding=pad, bias=False)
        self.bn = nn.BatchNorm1d(channels)
        self.mix = nn.Conv1d(channels, channels, 1)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop(self.mix(F.gelu(self.bn(self.conv(x)))))


class LocalSelfAttention(nn.Module):
    """Multi-head self-attention where frame ``t`` sees frames ``t-w .. t+w``.

    Computed in chunks of ``chunk`` queries against ``chunk + 2w`` keys, so
    time and memory are linear in ``T``; results do not depend on the chunk
    size (beyond rounding). A learned bias per head and relative offset
    (``2w + 1`` values, zero at initialisation) supplies position information.
    """

    def __init__(self, dim: int, n_heads: int, window: int, dropout: float = 0.0):
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"dim {dim} is not divisible by attention heads {n_heads}")
        self.dim, self.n_heads, self.window = dim, n_heads, window
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.rel_bias = nn.Parameter(torch.zeros(n_heads, 2 * window + 1))
        self.dropout = dropout
        self.chunk = max(16, window)

    def _bias(self, t: int, n_chunks: int, device, dtype) -> torch.Tensor:
        """Additive mask ``(n_heads * n_chunks, c, c + 2w)``: rel. bias or -inf."""
        c, w = self.chunk, self.window
        q = torch.arange(c, device=device)
        k = torch.arange(c + 2 * w, device=device)
        rel = k[None, :] - q[:, None]                      # offset + w, in [-(c-1), c+2w-1]
        band = (rel >= 0) & (rel <= 2 * w)                 # (c, c+2w)
        starts = torch.arange(n_chunks, device=device) * c
        qpos = starts[:, None] + q[None, :]                # (n, c) absolute query frame
        kpos = starts[:, None] - w + k[None, :]            # (n, c+2w) absolute key frame
        kvalid = (kpos >= 0) & (kpos < t)
        qpad = qpos >= t                                   # padding queries: let them see padding
        allowed = band[None] & (kvalid[:, None, :] | qpad[:, :, None])   # (n, c, c+2w)
        bias = self.rel_bias[:, rel.clamp(0, 2 * w)]       # (h, c, c+2w)
        neg = torch.tensor(float("-inf"), device=device, dtype=bias.dtype)
        mask = torch.where(allowed[None], bias[:, None], neg)  # (h, n, c, c+2w)
        return mask.reshape(self.n_heads * n_chunks, c, c + 2 * w).to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        h, w, c = self.n_heads, self.window, self.chunk
        dh = d // h
        n = -(-t // c)
        qkv = self.qkv(x).view(b, t, 3, h, dh).permute(2, 0, 3, 1, 4)   # (3, B, h, T, dh)
        q, k, v = qkv[0], qkv[1], qkv[2]
        q = F.pad(q, (0, 0, 0, n * c - t)).reshape(b, h * n, c, dh)
        kv_pad = (0, 0, w, n * c - t + w)
        # (B, h, n, dh, c+2w) -> (B, h*n, c+2w, dh)
        k = F.pad(k, kv_pad).unfold(2, c + 2 * w, c).transpose(-1, -2).reshape(b, h * n, c + 2 * w, dh)
        v = F.pad(v, kv_pad).unfold(2, c + 2 * w, c).transpose(-1, -2).reshape(b, h * n, c + 2 * w, dh)
        mask = self._bias(t, n, x.device, q.dtype)
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                           dropout_p=self.dropout if self.training else 0.0)
        o = o.reshape(b, h, n * c, dh)[:, :, :t].transpose(1, 2).reshape(b, t, d)
        return self.out(o)


class _AttentionBlock(nn.Module):
    def __init__(self, dim: int, n_heads: int, window: int, dropout: float, ffn_mult: int = 2):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = LocalSelfAttention(dim, n_heads, window, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_mult * dim), nn.GELU(),
                                 nn.Linear(ffn_mult * dim, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm1(x)))
        return x + self.drop(self.ffn(self.norm2(x)))


@architecture("student")
class ChordStudent(nn.Module):
    """Convolutional chord recogniser distilled from crema (see the module docstring).

    Constructor arguments (all JSON-serialisable, kept in :attr:`config`):

    n_bins, in_channels, bins_per_semitone
        Shape of the expected features (216, 1, 3 for :attr:`FEATURES`).
    stem_channels
        ``[c1, c2]``: channels at full bin resolution and at semitone resolution.
    dim
        Width of the per-frame embedding and the temporal stack.
    dilations, kernel_size
        One residual dilated conv block per dilation.
    attention_layers, attention_heads, attention_window
        Local self-attention blocks after the conv stack; frame ``t`` attends
        to ``t +- attention_window``.
    heads
        Structured outputs to add (subset of ``["root", "bass", "pitch"]``);
        the chord head is conditioned on them.
    dropout
        Dropout in the temporal stack (training only).
    """

    FEATURES = {"sample_rate": 22050, "hop_length": 2048, "fmin": 32.70319566257483,
                "n_bins": 216, "bins_per_octave": 36, "harmonics": [1],
                "scaling": "log1p", "log1p_gain": 100.0}
    BINS_PER_SEMITONE = 3
    N_CLASSES = 170

    def __init__(self, n_bins: int = 216, in_channels: int = 1, bins_per_semitone: int = 3,
                 stem_channels=(16,), dim: int = 128,
                 dilations=(1, 2, 4, 8, 16, 1, 2, 4), kernel_size: int = 3,
                 attention_layers: int = 1, attention_heads: int = 4,
                 attention_window: int = 24, heads=("root", "bass", "pitch"),
                 dropout: float = 0.1, n_classes: int = 170):
        super().__init__()
        heads = list(heads)
        for name in heads:
            if name not in HEAD_SIZES:
                raise ValueError(f"unknown head {name!r} (choose from {sorted(HEAD_SIZES)})")
        if kernel_size % 2 != 1:
            raise ValueError("kernel_size must be odd")
        stem_channels = [int(c) for c in stem_channels]
        if not stem_channels:
            raise ValueError("stem_channels needs at least one entry")
        self.config = dict(
            n_bins=n_bins, in_channels=in_channels, bins_per_semitone=bins_per_semitone,
            stem_channels=stem_channels, dim=dim, dilations=[int(d) for d in dilations],
            kernel_size=kernel_size, attention_layers=attention_layers,
            attention_heads=attention_heads, attention_window=attention_window,
            heads=heads, dropout=dropout, n_classes=n_classes)
        bps = bins_per_semitone
        self.n_bins, self.in_channels = n_bins, in_channels
        self.n_semitones = -(-n_bins // bps)

        # Learned per-bin (and per-harmonic) normalisation of the input level.
        self.input_norm = nn.BatchNorm1d(in_channels * n_bins)
        # The stem works on (B, C, T, F) in channels-last memory, so that its
        # output is already laid out as (B, T, F * C) for the embedding.
        # First conv: 3 frames x (2 bps - 1) bins centred on every bps-th bin,
        # i.e. one output row per semitone (absorbs tuning offsets).
        layers = [_StemConv(in_channels, stem_channels[0], (3, 2 * bps - 1),
                            stride=(1, bps), padding=(1, bps - 1))]
        for cin, cout in zip(stem_channels, stem_channels[1:]):
            layers.append(_StemConv(cin, cout, (3, 3), padding=(1, 1)))
        self.stem = nn.Sequential(*layers)
        self.embed = nn.Linear(stem_channels[-1] * self.n_semitones, dim, bias=False)
        self.embed_norm = nn.BatchNorm1d(dim)
        self.temporal = nn.Sequential(*[_TemporalBlock(dim, kernel_size, d, dropout)
                                        for d in self.config["dilations"]])
        self.attention = nn.ModuleList([
            _AttentionBlock(dim, attention_heads, attention_window, dropout)
            for _ in range(attention_layers)])
        self.norm = nn.LayerNorm(dim)
        self.heads = nn.ModuleDict({name: nn.Linear(dim, HEAD_SIZES[name]) for name in heads})
        self.chord = nn.Linear(dim + sum(HEAD_SIZES[name] for name in heads), n_classes)

    def receptive_field(self) -> int:
        """One-sided temporal context in frames: output ``t`` sees inputs ``t +- k``."""
        k = len(self.config["stem_channels"])  # each stem conv spans 3 frames
        k += sum(d * (self.config["kernel_size"] - 1) // 2 for d in self.config["dilations"])
        k += self.config["attention_layers"] * self.config["attention_window"]
        return k

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        """Per-frame features ``H`` ``(B, T, dim)`` before the output heads."""
        if x.dim() != 4 or x.shape[1] != self.in_channels or x.shape[2] != self.n_bins:
            raise ValueError(f"expected features (B, {self.in_channels}, {self.n_bins}, T), "
                             f"got {tuple(x.shape)}")
        b, c, f, t = x.shape
        x = self.input_norm(x.reshape(b, c * f, t)).reshape(b, c, f, t)
        x = x.transpose(2, 3).contiguous(memory_format=torch.channels_last)  # (B, C, T, F)
        x = self.stem(x)                                        # (B, C', T, 72)
        x = x.permute(0, 2, 3, 1).reshape(b, t, -1)             # (B, T, 72 * C')
        x = self.embed(x).transpose(1, 2)                       # (B, dim, T)
        x = self.temporal(F.relu(self.embed_norm(x)))
        x = x.transpose(1, 2)                                   # (B, T, dim)
        for block in self.attention:
            x = block(x)
        return self.norm(x)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.embedding(x)
        out: dict[str, torch.Tensor] = {}
        cond = [h]
        for name, head in self.heads.items():
            logits = head(h)
            out[name] = logits
            probs = torch.sigmoid(logits) if name == "pitch" else torch.softmax(logits, -1)
            cond.append(probs.to(h.dtype))
        out["chord"] = self.chord(torch.cat(cond, -1) if len(cond) > 1 else h)
        return {"chord": out.pop("chord"), **out}


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


__all__ = ["ChordStudent", "LocalSelfAttention", "count_parameters", "HEAD_SIZES"]
