"""Tiny randomly initialised models for tests that train or run a teacher."""

from __future__ import annotations

from pathlib import Path

import torch

from model_zoo import registry
from model_zoo.student import ChordStudent

TINY_STUDENT = dict(stem_channels=[4], dim=16, dilations=[1, 2], attention_layers=0)


def save_tiny_student(directory: Path, name: str = "tiny", seed: int = 0) -> Path:
    """Register a tiny random chord student as ``name`` in ``directory``
    (seeded, so the same ``seed`` gives the same weights); returns ``directory``."""
    torch.manual_seed(seed)
    registry.save_model(ChordStudent(**TINY_STUDENT).eval(), name, task="chord",
                        features=ChordStudent.FEATURES, directory=directory,
                        extra={"window": 64})
    return directory
