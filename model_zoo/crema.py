"""The crema 0.2.0 structured chord model (McFee & Bello, ISMIR 2017), in torch.

Network (528,139 parameters; Keras BatchNorm eps = 1e-3)::

    HCQT (B, 2, 216, T) -> BN -> Conv 5x5 (1 filter, ReLU) -> BN
      -> Conv (1 x 216) (72 filters, ReLU) -> BN -> BiGRU(128) -> BN -> BiGRU(128) = H
    heads on H: pitch (12, sigmoid), root (13, softmax), bass (13, softmax)
    [H, pitch, root, bass] -> BN -> chord (170, softmax)

The GRUs are Keras-2 GRUs (``reset_after=False``, hard sigmoid), which
``torch.nn.GRU`` cannot express, so they are written out here. Weights are
converted from crema's ``model.h5`` by :func:`model_zoo.importers.import_crema`;
the chord output is permuted from crema's alphabetical class order to ours.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import vocab

FEATURES = {
    # crema analyses 44.1 kHz audio with hop 4096; 22.05 kHz with hop 2048 gives
    # the same frames (its top CQT bin, 4.2 kHz, is far below either Nyquist).
    "sample_rate": 22050, "hop_length": 2048, "fmin": 32.70319566257483,
    "n_bins": 216, "bins_per_octave": 36, "harmonics": [1, 2],
    "scaling": "db_max", "top_db": 80.0, "q_style": "librosa", "pad_mode": "constant",
    "sparsity": 0.01,  # librosa's sparsified filters, as crema's features were made
}


def hard_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """Keras 2's hard sigmoid: clip(0.2 x + 0.5, 0, 1)."""
    return (0.2 * x + 0.5).clamp(0.0, 1.0)


class KerasBiGRU(nn.Module):
    """Bidirectional Keras-2 GRU (``reset_after=False``), outputs concatenated.

    Parameters per direction ``d`` in (0 = forward, 1 = backward): ``kernel``
    ``(2, in, 3u)``, ``recurrent`` ``(2, u, 3u)``, ``bias`` ``(2, 3u)``, gate
    columns ordered ``[z | r | h]``. Both directions advance together in one
    batched matmul per step.
    """

    def __init__(self, input_size: int, units: int):
        super().__init__()
        self.units = units
        self.kernel = nn.Parameter(torch.zeros(2, input_size, 3 * units))
        self.recurrent = nn.Parameter(torch.zeros(2, units, 3 * units))
        self.bias = nn.Parameter(torch.zeros(2, 3 * units))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` (B, T, in) -> (B, T, 2u). With ``lengths``, sequence ``i`` is
        ``x[i, :lengths[i]]`` (frames beyond it are padding, outputs there are junk)."""
        b, t, _ = x.shape
        u = self.units
        if lengths is None:
            rev = x.flip(1)
        else:  # reverse each sequence within its own length
            idx = (lengths.view(-1, 1) - 1 - torch.arange(t, device=x.device)).clamp_min(0)
            rev = x.gather(1, idx.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        xs = torch.stack([x, rev])                             # (2, B, T, in)
        proj = torch.einsum("dbti,dio->dbto", xs, self.kernel) + self.bias[:, None, None]
        u_zr, u_h = self.recurrent[..., : 2 * u], self.recurrent[..., 2 * u:]
        h = x.new_zeros(2, b, u)
        outs = []
        for step in range(t):
            p = proj[:, :, step]
            zr = hard_sigmoid(p[..., : 2 * u] + torch.bmm(h, u_zr))
            z, r = zr[..., :u], zr[..., u:]
            hh = torch.tanh(p[..., 2 * u:] + torch.bmm(r * h, u_h))
            h = z * h + (1 - z) * hh
            outs.append(h)
        out = torch.stack(outs, 2)                              # (2, B, T, u)
        if lengths is None:
            back = out[1].flip(1)
        else:
            back = out[1].gather(1, idx.unsqueeze(-1).expand(-1, -1, u))
        return torch.cat([out[0], back], -1)


def _bn_last(bn: nn.BatchNorm1d, x: torch.Tensor) -> torch.Tensor:
    return bn(x.transpose(1, 2)).transpose(1, 2)


class CremaChord(nn.Module):
    """crema's chord model; ``forward`` takes ``(B, 2, 216, T)`` dB HCQT frames."""

    task = "chord"
    FEATURES = FEATURES

    def __init__(self):
        super().__init__()
        self.config: dict = {}
        eps = 1e-3
        self.bn_in = nn.BatchNorm2d(2, eps=eps)
        self.conv1 = nn.Conv2d(2, 1, (5, 5), padding=2)
        self.bn1 = nn.BatchNorm2d(1, eps=eps)
        self.conv2 = nn.Conv2d(1, 72, (1, 216))
        self.bn2 = nn.BatchNorm1d(72, eps=eps)
        self.gru1 = KerasBiGRU(72, 128)
        self.bn3 = nn.BatchNorm1d(256, eps=eps)
        self.gru2 = KerasBiGRU(256, 128)
        self.pitch = nn.Linear(256, 12)
        self.root = nn.Linear(256, 13)
        self.bass = nn.Linear(256, 13)
        self.bn4 = nn.BatchNorm1d(294, eps=eps)
        self.chord = nn.Linear(294, 170)
        # Our class i is crema's class perm[i].
        crema = vocab.crema_labels()
        perm = [crema.index(lab) for lab in vocab.LABELS]
        self.register_buffer("perm", torch.tensor(perm), persistent=False)

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        x = x.transpose(2, 3)                                   # (B, 2, T, 216)
        x = self.bn1(F.relu(self.conv1(self.bn_in(x))))
        x = F.relu(self.conv2(x)).squeeze(-1).transpose(1, 2)   # (B, T, 72)
        return _bn_last(self.bn2, x)

    def forward(self, x: torch.Tensor, crema_order: bool = False) -> dict[str, torch.Tensor]:
        h = self.gru2(_bn_last(self.bn3, self.gru1(self._encode(x))))   # (B, T, 256)
        return self._heads(h, crema_order)

    def forward_many(self, feats: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """Whole tracks of different lengths (each ``(1, 2, 216, T_i)``) at once.

        The convolutional front runs per track (as on its own); the GRUs, the
        sequential part, advance all tracks together, one step per frame.
        """
        enc = [self._encode(f)[0] for f in feats]
        lengths = torch.tensor([e.shape[0] for e in enc], device=enc[0].device)
        x = torch.nn.utils.rnn.pad_sequence(enc, batch_first=True)
        h = self.gru2(_bn_last(self.bn3, self.gru1(x, lengths)), lengths)
        out = self._heads(h, False)
        return [{k: v[i: i + 1, : int(n)] for k, v in out.items()}
                for i, n in enumerate(lengths)]

    def _heads(self, h: torch.Tensor, crema_order: bool) -> dict[str, torch.Tensor]:
        pitch, root, bass = self.pitch(h), self.root(h), self.bass(h)
        z = torch.cat([h, torch.sigmoid(pitch), root.softmax(-1), bass.softmax(-1)], -1)
        chord = self.chord(_bn_last(self.bn4, z))
        if not crema_order:
            chord = chord.index_select(-1, self.perm)
        return {"chord": chord, "root": root, "bass": bass, "pitch": pitch}
