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


def register_tiny_students(directory: Path, monkeypatch,
                           names=("tiny-a", "tiny-b")) -> Path:
    """Save tiny random students ``names`` (seeds 0, 1, ...) in ``directory`` and make
    it the model directory (``KEYCHORDS_MODEL_DIR``); returns ``directory``."""
    for seed, name in enumerate(names):
        save_tiny_student(directory, name, seed)
    monkeypatch.setenv("KEYCHORDS_MODEL_DIR", str(directory))
    return directory


def save_tiny_key_teachers(directory: Path, seed: int = 0) -> Path:
    """Register tiny random key teachers in ``directory``: ``tiny-skey`` (a ChromaNet
    on S-KEY's features, 15 s segments) and ``tiny-keynet`` (whole track)."""
    from model_zoo.keynet import FEATURES as KEYNET_FEATURES, KeyNet
    from model_zoo.skey import FEATURES as SKEY_FEATURES, ChromaNet
    torch.manual_seed(seed)
    registry.save_model(ChromaNet(channels=(2, 3, 4, 4, 4, 4, 3)).eval(), "tiny-skey",
                        task="key", features=dict(SKEY_FEATURES), directory=directory,
                        extra={"segment_seconds": 15.0})
    registry.save_model(KeyNet(n_filters=2).eval(), "tiny-keynet", task="key",
                        features=dict(KEYNET_FEATURES), directory=directory,
                        extra={"segment_seconds": None})
    return directory


def write_key_change_song(directory: Path) -> Path:
    """``song.wav`` (40 s) whose ``song.key`` says C major for 20 s, then G major."""
    from tests.audio_fixtures import make_audio_file
    make_audio_file(directory / "song.wav", "wav", seconds=40.0, channels=1)
    (directory / "song.key").write_text("C major\n0.0\t20.0\tC major\n20.0\t40.0\tG major\n")
    return directory
