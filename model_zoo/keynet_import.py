"""Import the released keynet checkpoint (MusicalKeyCNN's ``keynet.pt``)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from . import keys
from .registry import ModelCard, ModelError, save_model

KEYNET_SOURCE = "Menschomat/MusicalKeyCNN checkpoints/keynet.pt"
_LAST = ("conv9.conv.weight", "conv9.bn.weight", "conv9.bn.bias",
         "conv9.bn.running_mean", "conv9.bn.running_var")


def read_keynet_checkpoint(path) -> dict:
    """The checkpoint's state dict, its last layer permuted to our key order."""
    import torch

    from .keynet import camelot_permutation
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for foreign files
        raise ModelError(f"{path}: not a readable PyTorch state dict "
                         f"({type(e).__name__})") from None
    if not isinstance(sd, dict) or not all(k in sd for k in _LAST):
        raise ModelError(f"{path}: no conv1..conv9 weights (not a keynet checkpoint)")
    if sd["conv9.conv.weight"].shape[0] != keys.N_KEYS:
        raise ModelError(f"{path}: keynet's last layer has "
                         f"{sd['conv9.conv.weight'].shape[0]} outputs, not 24 keys")
    perm = torch.tensor(camelot_permutation())
    return {k: (v.index_select(0, perm) if k in _LAST else v) for k, v in sd.items()}


def import_keynet(path, model_id: str = "keynet", directory=None) -> ModelCard:
    """Convert keynet.pt into a registry model answering in our key order."""
    from .keynet import FEATURES, KeyNet
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such file")
    sd = read_keynet_checkpoint(path)
    net = KeyNet(n_filters=int(sd["conv1.conv.weight"].shape[0]))
    try:
        net.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise ModelError(f"{path}: weights do not fit KeyNet "
                         f"({str(e).strip().splitlines()[-1].strip()})") from None
    return save_model(
        net.eval(), model_id, task="key", features=FEATURES, directory=directory,
        license="MIT (MusicalKeyCNN, Menschomat)",
        provenance={"source": KEYNET_SOURCE, "source_file": path.name,
                    "source_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                    "reference": "Korzeniowski & Widmer, Genre-Agnostic Key Classification "
                                 "With Convolutional Neural Networks, ISMIR 2018",
                    "trained_on": "GiantSteps-MTG key (EDM); a teacher, never shipped as is"},
        extra={"segment_seconds": None},
    )
