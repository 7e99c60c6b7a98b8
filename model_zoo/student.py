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
  ``s`` semitones is a shift of the frequency axis by ``3 s`` bins, with
  :func:`model_zoo.vocab.transpose_permutation` for the labels),
  ``log1p(100 |C|)`` scaling. Nothing is assumed about the absolute level:
  the network starts with a learned per-bin normalisation.
* Output: ``{"chord": (B, T, 170)}`` logits in :mod:`model_zoo.vocab` order,
  plus, for each name in ``config["heads"]`` (default all three, as crema),
  ``"root"`` / ``"bass"`` ``(B, T, 13)`` logits (pitch classes C..B, then N)
  and ``"pitch"`` ``(B, T, 12)`` chord-tone logits (use a sigmoid). The
  output has exactly the input's ``T`` for every ``T >= 1``: nothing is
  pooled or strided in time.

Architecture (the defaults, i.e. the shipped size)
--------------------------------------------------
::

    x (B,1,216,T)
     -> BatchNorm over the 216 bins (per-bin affine: level / tilt normalisation)
     -> Conv2d 1->16, 3 frames x 5 bins, stride 3 bins, ReLU   -> (16, 72 semitones)
        (each output row is centred on a semitone, +-2/3 semitone wide: tuning slack)
     -> flatten 16 x 72 = 1152 -> Linear 112, BN, ReLU        (per-frame embedding,
        the counterpart of crema's (1 x 216) dense conv)
     -> 8 residual dilated blocks, dilations 1 2 4 8 16 1 2 4:
          x + Conv1x1(GELU(BN(Conv1d k=3, dilated (x))))
     -> 1 local self-attention block (pre-LN, 4 heads; frame t attends to
        t-24..t+24 with a learned relative-position bias) + GELU FFN (x2)
     -> LayerNorm = H (B, T, 112)
     heads on H: root Linear(13), bass Linear(13), pitch Linear(12)
     chord: Linear(170) on concat[H, softmax(root), softmax(bass), sigmoid(pitch)]

Parameters: 666,000 with the default config, about 0.7 M multiply-adds per
frame. Temporal receptive field: output frame ``t`` depends on input frames
``t - 63 .. t + 63`` (about +-5.8 s) and on nothing else
(:meth:`ChordStudent.receptive_field`: stem 1, dilated stack 38, attention 24
frames on each side). Run on windows that overlap by ``2 * 63`` frames and
keep the centres, and the result equals a whole-track pass; with less
overlap, frames near a window edge see zero padding instead of part of their
context.

Why this shape
--------------
(The measurements behind these choices: training/README.md, "The chord
student's shape and speed".)

* Speed: no recurrence. Every layer is a convolution, a matmul, or a banded
  attention computed chunk by chunk (cost linear in ``T``), so a batch of
  windows is a handful of large matrix products: close to peak FLOP rate on
  a CPU and fully parallel on a GPU, where crema's BiGRUs must take one
  dependent step per frame. The stem reaches semitone resolution in its
  first (cheap, single-channel) conv, and there is no further full-map 2-D
  conv or BatchNorm over the 16 x 72 x T maps: one costs as much as several
  temporal blocks.
* Size: CPU time is proportional to multiply-adds per frame. The width
  (112) lies between one that came too close to the >= 5x speed target
  against crema on 2 cores and one no bigger than the teacher. The parameters are spent as crema spends them (a
  per-frame pitch embedding, then temporal context), plus root / bass /
  chord-tone heads that condition the 170-way output as in crema and are
  extra distillation targets (the teacher provides all three).
* Context: chords last a few seconds; +-63 frames spans several chord
  changes each way. The attention block adds content-dependent pooling over
  +-2.2 s (e.g. "same harmony as the beat before") that fixed dilated
  kernels express poorly; a second one would cost as much as three more
  conv blocks.
* Robustness: BatchNorm folds to a per-channel affine at inference, so in
  eval mode a frame's output does not depend on the other windows in the
  batch or on frames outside its receptive field. Works under
  ``torch.autocast`` (bf16 / fp16; the attention softmax runs in float32);
  only conv, matmul, indexing and elementwise ops, nothing CPU-specific, so
  it runs on CUDA as is.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .vocab import transpose_permutation

HEAD_SIZES = {"root": 13, "bass": 13, "pitch": 12}
DILATIONS = (1, 2, 4, 8, 16, 1, 2, 4)   # the shipped temporal stack


class _StemConv(nn.Module):
    """Conv2d + ReLU on ``(B, C, T, F)`` (time, frequency); with BN when ``norm``.

    The first stem conv has no BN: its input is already normalised per bin,
    and a BatchNorm over the largest activation map in the network costs as
    much CPU time as the conv itself.
    """

    def __init__(self, cin: int, cout: int, kernel: tuple[int, int],
                 stride: tuple[int, int] = (1, 1), padding: tuple[int, int] = (0, 0),
                 norm: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=not norm)
        self.bn = nn.BatchNorm2d(cout) if norm else nn.Identity()
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

    def start_as_identity(self) -> None:
        """Zero the block's output projection: it then passes its input through
        unchanged (and still learns, since the projection's gradient is not zero)."""
        nn.init.zeros_(self.mix.weight)
        nn.init.zeros_(self.mix.bias)


class LocalSelfAttention(nn.Module):
    """Multi-head self-attention where frame ``t`` sees frames ``t-w .. t+w``.

    Frames are cut into chunks of ``chunk >= w`` queries; each chunk attends
    to itself and its two neighbours (``3 * chunk`` keys, masked to the band),
    so time and memory are linear in ``T`` and the result does not depend on
    the chunk size (beyond rounding). A learned bias per head and relative
    offset (``2w + 1`` values, zero at initialisation) supplies position
    information. Plain batched matmuls: runs on any device and under autocast.
    """

    def __init__(self, dim: int, n_heads: int, window: int, dropout: float = 0.0):
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"dim {dim} is not divisible by attention heads {n_heads}")
        if window < 1:
            raise ValueError("attention window must be >= 1 frame")
        self.dim, self.n_heads, self.window = dim, n_heads, window
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.rel_bias = nn.Parameter(torch.zeros(n_heads, 2 * window + 1))
        self.dropout = dropout
        self.chunk = window

    def _bias(self, t: int, n: int, device: torch.device) -> torch.Tensor:
        """Additive scores ``(n, 1, heads, c, 3c)``: relative bias, or -inf off the band."""
        c, w = self.chunk, self.window
        q = torch.arange(c, device=device)
        k = torch.arange(3 * c, device=device) - c
        rel = k[None, :] - q[:, None]                      # key - query, (c, 3c)
        band = rel.abs() <= w
        starts = torch.arange(n, device=device) * c
        kpos = starts[:, None] + k[None, :]                # (n, 3c) absolute key frame
        qpad = (starts[:, None] + q[None, :]) >= t         # (n, c) padding queries
        # Padding queries may see padding keys (their own frame at least), so
        # no row is all -inf; their outputs are discarded.
        allowed = band & (((kpos >= 0) & (kpos < t))[:, None, :] | qpad[:, :, None])
        bias = self.rel_bias[:, (rel + w).clamp(0, 2 * w)]                   # (h, c, 3c)
        bias = bias.masked_fill(~band, float("-inf"))
        return bias[None].masked_fill(~allowed[:, None], float("-inf"))[:, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        h, c = self.n_heads, self.chunk
        if c < self.window:
            raise ValueError("chunk must be at least the attention window")
        dh = d // h
        n = -(-t // c)
        qkv = F.pad(self.qkv(x), (0, 0, c, (n + 1) * c - t))          # (B, (n+2)c, 3d)
        # -> (3, n+2, B, h, c, dh): chunk-major, so neighbouring chunks are plain views.
        qkv = qkv.view(b, n + 2, c, 3, h, dh).permute(3, 1, 0, 4, 2, 5).contiguous()
        q = qkv[0, 1:n + 1].reshape(n * b * h, c, dh) * dh ** -0.5
        k, v = (torch.cat([qkv[i, 0:n], qkv[i, 1:n + 1], qkv[i, 2:n + 2]], 3)
                .reshape(n * b * h, 3 * c, dh) for i in (1, 2))
        scores = torch.bmm(q, k.transpose(1, 2)).view(n, b, h, c, 3 * c)
        scores = scores.float() + self._bias(t, n, x.device)
        attn = torch.softmax(scores, -1).to(v.dtype).view(n * b * h, c, 3 * c)
        attn = F.dropout(attn, self.dropout, self.training)
        o = torch.bmm(attn, v).view(n, b, h, c, dh)                  # (n, B, h, c, dh)
        o = o.permute(1, 0, 3, 2, 4).reshape(b, n * c, d)[:, :t]
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


class _FrameBlock(nn.Module):
    """Per-frame residual MLP on ``(B, C, T)``: ``x + W2 GELU(W1 BN(x))``, hidden width
    ``mult * C``. It mixes nothing across time, so the receptive field is unchanged;
    ``W2`` starts at zero, so adding blocks to a trained student leaves its output
    unchanged."""

    def __init__(self, channels: int, mult: int, dropout: float):
        super().__init__()
        self.bn = nn.BatchNorm1d(channels)
        self.up = nn.Conv1d(channels, mult * channels, 1)
        self.down = nn.Conv1d(mult * channels, channels, 1)
        self.drop = nn.Dropout(dropout)
        self.start_as_identity()

    def start_as_identity(self) -> None:
        nn.init.zeros_(self.down.weight)
        nn.init.zeros_(self.down.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop(self.down(F.gelu(self.up(self.bn(x)))))


class _TrackContext(nn.Module):
    """Whole-track context at little cost: frames averaged in blocks of ``pool``,
    a bi-directional GRU over the blocks, its output projected, interpolated back
    to the frame rate and added to every frame. The projection starts at zero,
    so adding this to a trained student leaves its output unchanged."""

    def __init__(self, dim: int, units: int, pool: int):
        super().__init__()
        if pool < 1 or units < 1:
            raise ValueError("context_pool and context_units must be >= 1")
        self.pool = pool
        self.norm = nn.LayerNorm(dim)
        self.gru = nn.GRU(dim, units, batch_first=True, bidirectional=True)
        self.proj = nn.Linear(2 * units, dim)
        self.start_as_identity()

    def start_as_identity(self) -> None:
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        n = -(-t // self.pool)
        with torch.autocast(x.device.type, enabled=False):
            z = F.pad(self.norm(x.float()).transpose(1, 2), (0, n * self.pool - t))
            counts = F.pad(z.new_ones(1, 1, t), (0, n * self.pool - t))
            z = (z.view(b, d, n, self.pool).sum(-1)
                 / counts.view(1, 1, n, self.pool).sum(-1))           # block means (B, d, n)
            y, _ = self.gru(z.transpose(1, 2))                         # (B, n, 2 units)
            y = self.proj(y).transpose(1, 2)                           # (B, d, n)
            y = F.interpolate(y, size=n * self.pool, mode="linear", align_corners=False)
        return x + y[..., :t].transpose(1, 2).to(x.dtype)


class ChordStudent(nn.Module):
    """Convolutional chord recogniser distilled from crema (see the module docstring).

    Constructor arguments (all JSON-serialisable, kept in :attr:`config`):

    n_bins, in_channels, bins_per_semitone
        Shape of the expected features (216, 1, 3 for :attr:`FEATURES`).
    stem_channels
        ``[c1, ...]``: channels of the first conv (which reaches semitone
        resolution), then of optional extra 3 x 3 convs at semitone resolution.
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
    frame_blocks, frame_mult
        With ``frame_blocks > 0``, that many per-frame residual MLP blocks
        (:class:`_FrameBlock`, hidden width ``frame_mult * dim``) between the
        embedding and the dilated stack: more capacity per frame, the same
        receptive field. Each starts as the identity, so they can be added to a
        trained student (``distill --frame-blocks``). Off (0) up to kc-chord-v2.1.
        Dilated blocks can be added the same way (``distill --extra-dilations``,
        :meth:`load_grown`): they lengthen the receptive field.
    shift_average
        Semitone shifts, e.g. ``[-1, 0, 1]``: in eval mode the input is also
        run pitch-shifted by each (the frequency axis moved by
        ``bins_per_semitone * s`` bins, silence entering at the edge), every
        output is moved back (:func:`model_zoo.vocab.transpose_permutation`)
        and the heads' log-probabilities are averaged (a geometric mean;
        ``pitch`` logits are averaged). Costs one more pass per shift, no
        weights; training runs the plain network (its windows are already
        pitch-shifted at random). Off (empty) up to kc-chord-v2.1.
    context_units, context_pool
        With ``context_units > 0``, a whole-track context block after the
        attention (:class:`_TrackContext`: a bi-directional GRU of that many
        units per direction over ``context_pool``-frame block means). The
        receptive field is then the whole track: run such a model on whole
        tracks, not on windows. Off (0) in the shipped model.
    """

    FEATURES = {"sample_rate": 22050, "hop_length": 2048, "fmin": 32.70319566257483,
                "n_bins": 216, "bins_per_octave": 36, "harmonics": [1],
                "scaling": "log1p", "log1p_gain": 100.0}
    BINS_PER_SEMITONE = 3
    N_CLASSES = 170
    task = "chord"
    batches_tracks = False    # windows of many tracks batch instead

    def __init__(self, n_bins: int = 216, in_channels: int = 1, bins_per_semitone: int = 3,
                 stem_channels=(16,), dim: int = 112,
                 dilations=DILATIONS, kernel_size: int = 3,
                 attention_layers: int = 1, attention_heads: int = 4,
                 attention_window: int = 24, heads=("root", "bass", "pitch"),
                 dropout: float = 0.1, n_classes: int = 170,
                 context_units: int = 0, context_pool: int = 8,
                 frame_blocks: int = 0, frame_mult: int = 4, shift_average=()):
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
        # only when used, so that older cards keep their exact config
        if frame_blocks:
            self.config.update(frame_blocks=int(frame_blocks), frame_mult=int(frame_mult))
        if context_units:
            self.config.update(context_units=int(context_units), context_pool=int(context_pool))
        self.shifts = [int(v) for v in shift_average]
        if self.shifts:
            if len(set(self.shifts)) != len(self.shifts):
                raise ValueError("shift_average lists a shift twice")
            self.config.update(shift_average=self.shifts)
        # per shift, the indices that move its chord vectors back: y = y_shifted[..., perm]
        # (built once and kept on the model's device; not part of the weights)
        perms = [transpose_permutation(s) for s in self.shifts]
        self.register_buffer("shift_perms", torch.tensor(perms, dtype=torch.long).view(
            len(perms), n_classes), persistent=False)
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
                            stride=(1, bps), padding=(1, bps - 1), norm=False)]
        for cin, cout in zip(stem_channels, stem_channels[1:]):
            layers.append(_StemConv(cin, cout, (3, 3), padding=(1, 1)))
        self.stem = nn.Sequential(*layers)
        self.embed = nn.Linear(stem_channels[-1] * self.n_semitones, dim, bias=False)
        self.embed_norm = nn.BatchNorm1d(dim)
        self.frame = nn.Sequential(*[_FrameBlock(dim, int(frame_mult), dropout)
                                     for _ in range(int(frame_blocks))])
        self.temporal = nn.Sequential(*[_TemporalBlock(dim, kernel_size, d, dropout)
                                        for d in self.config["dilations"]])
        self.attention = nn.ModuleList([
            _AttentionBlock(dim, attention_heads, attention_window, dropout)
            for _ in range(attention_layers)])
        self.context = (_TrackContext(dim, int(context_units), int(context_pool))
                        if context_units else None)
        self.norm = nn.LayerNorm(dim)
        self.heads = nn.ModuleDict({name: nn.Linear(dim, HEAD_SIZES[name]) for name in heads})
        self.chord = nn.Linear(dim + sum(HEAD_SIZES[name] for name in heads), n_classes)

    def load_grown(self, state: dict) -> list[str]:
        """Load the weights of the student this one grew from; returns the keys
        ``state`` lacks.

        The blocks a student can grow by (per-frame blocks, the track context,
        dilated blocks appended to the temporal stack) are set to the identity
        where ``state`` lacks them, so at first the output is the old
        student's; their other weights stay as they are. Anything else that
        does not fit raises ``ValueError``.
        """
        missing, unexpected = self.load_state_dict(state, strict=False)
        n_old = len({k.split(".")[1] for k in state if k.startswith("temporal.")})
        grown = {name: block for name, block in self.named_modules()
                 if hasattr(block, "start_as_identity")
                 and (name.startswith(("frame.", "context"))
                      or (name.startswith("temporal.") and int(name.split(".")[1]) >= n_old))}
        other = [k for k in missing if not any(k.startswith(n + ".") for n in grown)]
        if unexpected or other:
            raise ValueError(f"the weights do not fit this student: missing {other[:3]}, "
                             f"unexpected {unexpected[:3]}")
        for name, block in grown.items():
            if any(k.startswith(name + ".") for k in missing):
                block.start_as_identity()
        return missing

    def receptive_field(self) -> int | None:
        """One-sided temporal context in frames: output ``t`` sees inputs ``t +- k``
        (None: the whole track, with a context block)."""
        if self.context is not None:
            return None
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
        x = self.temporal(self.frame(F.relu(self.embed_norm(x))))
        x = x.transpose(1, 2)                                   # (B, T, dim)
        for block in self.attention:
            x = block(x)
        if self.context is not None:
            x = self.context(x)
        return self.norm(x)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.shifts and not self.training:
            return self._shift_average(x)
        return self._heads(x)

    def _shift_average(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The outputs averaged over the input pitch-shifted by ``self.shifts``."""
        bins = self.config["bins_per_semitone"]
        total: dict[str, torch.Tensor] = {}
        for s, perm in zip(self.shifts, self.shift_perms):
            k = bins * s          # up by s semitones: bin f takes bin f - k
            xs = x if k == 0 else (F.pad(x[:, :, :-k], (0, 0, k, 0)) if k > 0
                                   else F.pad(x[:, :, -k:], (0, 0, 0, -k)))
            for name, v in self._heads(xs).items():
                v = v.float()
                if name == "chord":
                    v = v.log_softmax(-1)[..., perm]
                elif name == "pitch":
                    v = v.roll(-s, -1)
                else:  # root / bass: 12 pitch classes, then N
                    v = v.log_softmax(-1)
                    v = torch.cat([v[..., :12].roll(-s, -1), v[..., 12:]], -1)
                total[name] = total[name] + v if name in total else v
        return {name: v / len(self.shifts) for name, v in total.items()}

    def _heads(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.embedding(x)
        aux = {name: head(h) for name, head in self.heads.items()}
        cond = [h] + [(torch.sigmoid(v) if name == "pitch" else torch.softmax(v, -1)).to(h.dtype)
                      for name, v in aux.items()]
        chord = self.chord(torch.cat(cond, -1) if aux else h)
        return {"chord": chord, **aux}


__all__ = ["ChordStudent", "LocalSelfAttention", "HEAD_SIZES", "DILATIONS"]
