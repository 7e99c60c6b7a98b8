"""BTC port: original checkpoint layout, forward equivalence, label order, import.

The real BTC checkpoints are not available to the tests, so checkpoints in
the original layout (``{"model": state_dict, "mean": ..., "std": ...}``)
are generated with random weights from the layout table below, which is
written from the original code (BTC-ISMIR19: btc_model.py,
utils/transformer_modules.py, run_config.yaml), not from our module.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from model_zoo import btc as btc_mod
from model_zoo import registry, vocab
from model_zoo.btc import BTC, IMPOSSIBLE_LOGIT, original_labels
from model_zoo.importers import import_btc

torch.set_num_threads(min(4, torch.get_num_threads()))

# ---------------------------------------------------------------------------
# Facts from the original code.
# run_config.yaml (model): feature_size 144, timestep 108, num_layers 8,
# num_heads 4, hidden_size 128, total_key_depth 128, total_value_depth 128,
# filter_size 128; num_chords 25 or 170.
FEAT, HID, LAYERS, HEADS, FILT, WIN = 144, 128, 8, 4, 128, 108

# One self_attention_block: MultiHeadAttention (4 bias-free linears),
# PositionwiseFeedForward 'cc' (two Conv wrappers holding nn.Conv1d k=3),
# two LayerNorm(gamma, beta). Creation order = state dict order.
_BLOCK = [
    ("multi_head_attention.query_linear.weight", (HID, HID)),
    ("multi_head_attention.key_linear.weight", (HID, HID)),
    ("multi_head_attention.value_linear.weight", (HID, HID)),
    ("multi_head_attention.output_linear.weight", (HID, HID)),
    ("positionwise_convolution.layers.0.conv.weight", (FILT, HID, 3)),
    ("positionwise_convolution.layers.0.conv.bias", (FILT,)),
    ("positionwise_convolution.layers.1.conv.weight", (HID, FILT, 3)),
    ("positionwise_convolution.layers.1.conv.bias", (HID,)),
    ("layer_norm_mha.gamma", (HID,)),
    ("layer_norm_mha.beta", (HID,)),
    ("layer_norm_ffn.gamma", (HID,)),
    ("layer_norm_ffn.beta", (HID,)),
]


def original_layout(num_classes: int, layers: int = LAYERS) -> list[tuple[str, tuple]]:
    """BTC_model(config).state_dict() names and shapes, in order."""
    out = [("self_attn_layers.embedding_proj.weight", (HID, FEAT))]
    for i in range(layers):
        pre = f"self_attn_layers.self_attn_layers.{i}."
        for blk in ("attn_block", "backward_attn_block"):
            out += [(f"{pre}{blk}.{n}", s) for n, s in _BLOCK]
        out += [(f"{pre}linear.weight", (HID, 2 * HID)), (f"{pre}linear.bias", (HID,))]
    out += [("self_attn_layers.layer_norm.gamma", (HID,)),
            ("self_attn_layers.layer_norm.beta", (HID,)),
            # SoftmaxOutputLayer: projection + an (unused) bidirectional LSTM.
            ("output_layer.output_projection.weight", (num_classes, HID)),
            ("output_layer.output_projection.bias", (num_classes,))]
    for sfx in ("", "_reverse"):
        out += [(f"output_layer.lstm.weight_ih_l0{sfx}", (4 * HID // 2, HID)),
                (f"output_layer.lstm.weight_hh_l0{sfx}", (4 * HID // 2, HID // 2)),
                (f"output_layer.lstm.bias_ih_l0{sfx}", (4 * HID // 2,)),
                (f"output_layer.lstm.bias_hh_l0{sfx}", (4 * HID // 2,))]
    return out


# utils/mir_eval_modules.py: idx2chord (25) and idx2voca_chord (170).
IDX2CHORD = ["C", "C:min", "C#", "C#:min", "D", "D:min", "D#", "D#:min", "E", "E:min",
             "F", "F:min", "F#", "F#:min", "G", "G:min", "G#", "G#:min", "A", "A:min",
             "A#", "A#:min", "B", "B:min", "N"]
_ROOTS = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]
_QUALS = ["min", "maj", "dim", "aug", "min6", "maj6", "min7", "minmaj7", "maj7", "7",
          "dim7", "hdim7", "sus2", "sus4"]


def idx2voca_chord() -> list[str]:
    labels = [None] * 170
    labels[169], labels[168] = "N", "X"
    for i in range(168):
        r, q = _ROOTS[i // 14], _QUALS[i % 14]
        labels[i] = r if i % 14 == 1 else f"{r}:{q}"
    return labels


# ---------------------------------------------------------------------------
# Original-layout checkpoints and an independent reference forward.

def make_state(num_classes: int, seed: int = 0, layers: int = LAYERS) -> dict:
    g = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in original_layout(num_classes, layers):
        fan_in = shape[1] * (shape[2] if len(shape) == 3 else 1) if len(shape) > 1 else HID
        t = torch.randn(shape, generator=g) / math.sqrt(fan_in)
        if name.endswith("gamma"):
            t = 1.0 + 0.1 * torch.randn(shape, generator=g)
        elif name.endswith(("beta", "bias")):
            t = 0.1 * torch.randn(shape, generator=g)
        state[name] = t
    return state


MEAN, STD = -4.25, np.float64(2.5)  # train.py: mean is a float, std np.sqrt(...)


def write_checkpoint(path, num_classes: int, seed: int = 0, **extra) -> dict:
    state = make_state(num_classes, seed)
    ckpt = {"model": state, "mean": MEAN, "std": STD}
    ckpt.update(extra)
    torch.save(ckpt, path)
    return state


def _ref_ln(x, g, b):
    return g * (x - x.mean(-1, keepdim=True)) / (x.std(-1, keepdim=True) + 1e-6) + b


def _ref_timing(length, channels):
    n = channels // 2
    inc = math.log(1.0e4) / (n - 1)
    inv = np.exp(np.arange(n) * -inc)
    st = np.arange(length)[:, None] * inv[None, :]
    return torch.tensor(np.concatenate([np.sin(st), np.cos(st)], 1), dtype=torch.float32)


def _ref_block(x, s, pre, mask):
    t = x.shape[0]
    xn = _ref_ln(x, s[pre + "layer_norm_mha.gamma"], s[pre + "layer_norm_mha.beta"])
    mha = pre + "multi_head_attention."
    d = HID // HEADS
    q = (xn @ s[mha + "query_linear.weight"].T).view(t, HEADS, d).transpose(0, 1) * d ** -0.5
    k = (xn @ s[mha + "key_linear.weight"].T).view(t, HEADS, d).transpose(0, 1)
    v = (xn @ s[mha + "value_linear.weight"].T).view(t, HEADS, d).transpose(0, 1)
    w = torch.softmax(q @ k.transpose(1, 2) + mask[:t, :t], dim=-1)
    ctx = (w @ v).transpose(0, 1).reshape(t, HID)
    x = x + ctx @ s[mha + "output_linear.weight"].T
    y = _ref_ln(x, s[pre + "layer_norm_ffn.gamma"], s[pre + "layer_norm_ffn.beta"])
    for j in range(2):  # conv k=3 'both' padding, ReLU after each (incl. the last)
        c = pre + f"positionwise_convolution.layers.{j}.conv."
        yp = torch.nn.functional.pad(y.T[None], (1, 1))
        y = torch.relu(torch.nn.functional.conv1d(yp, s[c + "weight"], s[c + "bias"])[0].T)
    return x + y


def reference_logits(state, mean, std, feature_ft: np.ndarray, layers: int = LAYERS):
    """test.py: (F, T) log-CQT -> (T, C) logits in the original class order."""
    feat = (feature_ft.T.astype(np.float64) - mean) / std
    num_pad = WIN - feat.shape[0] % WIN
    feat = np.pad(feat, ((0, num_pad), (0, 0)))
    fwd = torch.tensor(np.triu(np.full((WIN, WIN), -np.inf), 1), dtype=torch.float32)
    bwd = fwd.T
    timing = _ref_timing(WIN, HID)
    out = []
    with torch.no_grad():
        for i in range(feat.shape[0] // WIN):
            x = torch.tensor(feat[i * WIN:(i + 1) * WIN], dtype=torch.float32)
            x = x @ state["self_attn_layers.embedding_proj.weight"].T + timing
            for li in range(layers):
                pre = f"self_attn_layers.self_attn_layers.{li}."
                a = _ref_block(x, state, pre + "attn_block.", fwd)
                b = _ref_block(x, state, pre + "backward_attn_block.", bwd)
                x = (torch.cat([a, b], -1) @ state[pre + "linear.weight"].T
                     + state[pre + "linear.bias"])
            x = _ref_ln(x, state["self_attn_layers.layer_norm.gamma"],
                        state["self_attn_layers.layer_norm.beta"])
            out.append(x @ state["output_layer.output_projection.weight"].T
                       + state["output_layer.output_projection.bias"])
    return torch.cat(out)[: feature_ft.shape[1]]


def log_cqt(t: int, seed: int = 1, batch: int | None = None) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    shape = (FEAT, t) if batch is None else (batch, 1, FEAT, t)
    return torch.log(torch.rand(shape, generator=g) * 3 + 1e-6)


def net_from_state(num_classes, state, mean=MEAN, std=STD) -> BTC:
    net = BTC(num_classes=num_classes)
    net.load_state_dict(state, strict=True)
    net.set_normalisation(mean, std)
    return net.eval()


# ---------------------------------------------------------------------------

@pytest.mark.parametrize("num_classes", [25, 170])
def test_state_dict_layout_is_the_original(num_classes):
    net = BTC(num_classes=num_classes)
    sd = net.state_dict()
    ours = [(k, tuple(v.shape)) for k, v in sd.items()
            if k not in ("feature_mean", "feature_std")]
    assert ours == original_layout(num_classes)
    assert tuple(sd["feature_mean"].shape) == (FEAT,)
    assert tuple(sd["feature_std"].shape) == (FEAT,)
    assert "class_index" not in sd and not any("timing" in k for k in sd)
    assert net.config["num_classes"] == num_classes
    assert BTC(**net.config).config == net.config


def test_original_state_loads_strictly():
    state = make_state(170)
    net = BTC(num_classes=170)
    net.load_state_dict(state, strict=True)      # no mean/std in the original state dict
    assert torch.equal(net.feature_std, torch.ones(FEAT))
    partial = dict(state)
    partial["feature_mean"] = torch.zeros(FEAT)  # one normalisation entry alone is an error
    with pytest.raises(RuntimeError, match="feature_std"):
        BTC(num_classes=170).load_state_dict(partial, strict=True)
    del state["output_layer.lstm.bias_hh_l0"]
    with pytest.raises(RuntimeError, match="bias_hh_l0"):
        BTC(num_classes=170).load_state_dict(state, strict=True)


def test_label_orders():
    assert original_labels(25) == [lab if ":" in lab or lab == "N" else lab + ":maj"
                                   for lab in IDX2CHORD]
    for ours, theirs in zip(original_labels(170), idx2voca_chord()):
        assert vocab.label_to_index(ours) == vocab.label_to_index(theirs)
    perm170 = vocab.permutation_from_labels(idx2voca_chord())
    assert sorted(perm170) == list(range(170))
    assert BTC(num_classes=170).class_index.tolist() == perm170
    assert BTC(num_classes=25).class_index.tolist() == vocab.permutation_from_labels(IDX2CHORD)
    with pytest.raises(ValueError):
        BTC(num_classes=30)


@pytest.mark.parametrize("num_classes,label,ours", [
    (25, "C:min", "C:min"), (25, "A", "A:maj"), (25, "N", "N"),
    (170, "C:min", "C:min"), (170, "C", "C:maj"), (170, "A#:minmaj7", "A#:minmaj7"),
    (170, "G:hdim7", "G:hdim7"), (170, "N", "N"), (170, "X", "X"),
])
def test_label_mapping_through_forward(num_classes, label, ours):
    labels = IDX2CHORD if num_classes == 25 else idx2voca_chord()
    j = labels.index(label)
    net = BTC(num_classes=num_classes).eval()
    with torch.no_grad():
        net.output_layer.output_projection.weight.zero_()
        net.output_layer.output_projection.bias.copy_(-torch.arange(num_classes) * 0.01)
        net.output_layer.output_projection.bias[j] = 5.0
        y = net(log_cqt(20, batch=1))["chord"]
    assert y.shape == (1, 20, 170)
    assert (y.argmax(-1) == vocab.LABELS.index(ours)).all()
    assert y[0, 0, vocab.LABELS.index(ours)] == 5.0
    if num_classes == 25:
        impossible = sorted(set(range(170)) - set(net.class_index.tolist()))
        assert len(impossible) == 145 and vocab.X_INDEX in impossible
        assert (y[..., impossible] == IMPOSSIBLE_LOGIT).all()


@pytest.mark.parametrize("num_classes,t", [(25, 250), (170, 216), (170, 37)])
def test_forward_matches_reference(num_classes, t):
    state = make_state(num_classes, seed=num_classes)
    net = net_from_state(num_classes, state)
    feat = log_cqt(t, seed=t)
    ref = reference_logits(state, MEAN, STD, feat.numpy())
    with torch.no_grad():
        native = net.native_logits(feat[None, None])[0]
        ours = net(feat[None, None])["chord"][0]
    assert native.shape == ref.shape == (t, num_classes)
    torch.testing.assert_close(native, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours[:, net.class_index], ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("t", [1, 107, 108, 109, 300])
def test_any_length_and_batch(t):
    net = net_from_state(25, make_state(25, seed=3))
    x = log_cqt(t, seed=4, batch=2)
    with torch.no_grad():
        y = net(x)["chord"]
        y0 = net(x[:1])["chord"]
    assert y.shape == (2, t, 170) and torch.isfinite(y).all()
    torch.testing.assert_close(y[:1], y0, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError):
        net(x[:, :, :100])


def test_masking_and_windows():
    torch.manual_seed(0)
    net = net_from_state(170, make_state(170, seed=5))
    layer = net.self_attn_layers.self_attn_layers[0]
    x = torch.randn(1, 30, HID)
    x2 = x.clone()
    x2[:, 20:] += torch.randn(1, 10, HID)   # change the future from frame 20
    x3 = x.clone()
    x3[:, :10] += torch.randn(1, 10, HID)   # change the past up to frame 9
    with torch.no_grad():
        f, f2, f3 = (layer.attn_block(v) for v in (x, x2, x3))
        b, b2, b3 = (layer.backward_attn_block(v) for v in (x, x2, x3))
    # Forward-masked block: attention sees frames <= i, and the two k=3 convs
    # of its feed-forward two more, so frames < 18 ignore frames >= 20.
    torch.testing.assert_close(f[:, :18], f2[:, :18], atol=0, rtol=0)
    assert not torch.allclose(f[:, 18], f2[:, 18])
    assert not torch.allclose(f[:, 0], f3[:, 0])
    # Backward-masked block: the mirror image.
    torch.testing.assert_close(b[:, 12:], b3[:, 12:], atol=0, rtol=0)
    assert not torch.allclose(b[:, 11], b3[:, 11])
    assert not torch.allclose(b[:, 29], b2[:, 29])
    # The whole model: bidirectional inside a window, windows independent.
    feat = log_cqt(250, seed=6, batch=1)
    feat2 = feat.clone()
    feat2[..., 107] += 1.0
    feat3 = feat.clone()
    feat3[..., 108:] += 1.0
    with torch.no_grad():
        y, y2, y3 = (net(v)["chord"] for v in (feat, feat2, feat3))
    assert not torch.allclose(y[:, 0], y2[:, 0])
    torch.testing.assert_close(y[:, 108:], y2[:, 108:], atol=0, rtol=0)
    torch.testing.assert_close(y[:, :108], y3[:, :108], atol=0, rtol=0)


def _load_without_registry(card):
    from safetensors.torch import load_file
    net = BTC(**card.config)
    net.load_state_dict(load_file(str(card.weights_path)), strict=True)
    return net.eval()


@pytest.mark.parametrize("num_classes", [25, 170])
def test_import_checkpoint_roundtrip(tmp_path, monkeypatch, num_classes):
    monkeypatch.setenv(registry.ENV_MODEL_DIR, str(tmp_path / "models"))
    src = tmp_path / f"btc_{num_classes}.pt"
    state = write_checkpoint(src, num_classes, seed=7, optimizer={"state": {}}, epoch=42)
    card = import_btc(src, model_id=f"btc-{num_classes}", directory=tmp_path / "models")
    assert card.architecture == "btc" and card.task == "chord" and card.license == "MIT"
    assert card.config["num_classes"] == num_classes
    assert card.features == BTC.FEATURES
    assert card.provenance["source_file"] == src.name
    assert card.provenance["source_sha256"] == registry.file_sha256(src)
    assert "Park et al. 2019" in card.provenance["source"]
    reread = registry.read_card(card.card_path)
    assert reread.config == card.config and reread.sha256 == card.sha256

    net = _load_without_registry(reread)
    assert torch.allclose(net.feature_mean, torch.full((FEAT,), MEAN))
    assert torch.allclose(net.feature_std, torch.full((FEAT,), float(STD)))
    feat = log_cqt(130, seed=8)
    with torch.no_grad():
        got = net(feat[None, None])["chord"][0]
        mem = net_from_state(num_classes, state)(feat[None, None])["chord"][0]
    torch.testing.assert_close(got, mem, atol=0, rtol=0)
    ref = reference_logits(state, MEAN, STD, feat.numpy())
    torch.testing.assert_close(got[:, net.class_index], ref, atol=1e-5, rtol=1e-5)


def test_import_then_registry_load_model(tmp_path, monkeypatch):
    monkeypatch.setenv(registry.ENV_MODEL_DIR, str(tmp_path))
    src = tmp_path / "btc_model_large_voca.pt"
    state = write_checkpoint(src, 170, seed=9)
    card = import_btc(src)          # default id, user model dir from the env
    assert card.directory == tmp_path and card.id == "btc"
    card2, net = registry.load_model("btc")
    assert card2.sha256 == card.sha256 and not net.training
    feat = log_cqt(120, seed=10)
    with torch.no_grad():
        got = net(feat[None, None])["chord"][0]
        mem = net_from_state(170, state)(feat[None, None])["chord"][0]
    torch.testing.assert_close(got, mem, atol=0, rtol=0)


def _bad_state(kind):
    state = make_state(25, seed=11)
    if kind == "shape":
        state["self_attn_layers.self_attn_layers.3.attn_block."
              "positionwise_convolution.layers.1.conv.weight"] = torch.zeros(HID, FILT, 5)
    elif kind == "classes":
        state["output_layer.output_projection.weight"] = torch.zeros(30, HID)
        state["output_layer.output_projection.bias"] = torch.zeros(30)
    elif kind == "extra":
        state["output_layer.crf.transitions"] = torch.zeros(25, 25)
    elif kind == "bins":
        state["self_attn_layers.embedding_proj.weight"] = torch.zeros(HID, 84)
    return state


@pytest.mark.parametrize("case,reason", [
    ("garbage", "not a readable PyTorch checkpoint"),
    ("list", "not a BTC checkpoint"),
    ("other_model", "not a BTC checkpoint"),
    ("no_mean", "no 'mean'"),
    ("bad_std", "'std' must be positive"),
    ("shape", "weights do not fit BTC"),
    ("classes", "30 classes"),
    ("extra", "weights do not fit BTC"),
    ("bins", "84 bins"),
    ("missing", "no such file"),
])
def test_import_errors(tmp_path, case, reason):
    src = tmp_path / "ckpt.pt"
    if case == "garbage":
        src.write_bytes(b"\x00not a checkpoint\xff" * 10)
    elif case == "list":
        torch.save([1, 2, 3], src)
    elif case == "other_model":
        torch.save({"model": torch.nn.Linear(3, 4).state_dict(), "mean": 0.0, "std": 1.0}, src)
    elif case == "no_mean":
        torch.save({"model": make_state(25), "std": 1.0}, src)
    elif case == "bad_std":
        torch.save({"model": make_state(25), "mean": 0.0, "std": 0.0}, src)
    elif case != "missing":
        torch.save({"model": _bad_state(case), "mean": 0.0, "std": 1.0}, src)
    with pytest.raises(registry.ModelError) as err:
        import_btc(src, directory=tmp_path / "models")
    msg = str(err.value)
    assert "\n" not in msg and str(src) in msg and reason in msg
    assert not (tmp_path / "models" / "btc.json").exists()


def test_module_constants():
    assert BTC.FEATURES["n_bins"] == FEAT and BTC.FEATURES["bins_per_octave"] == 24
    assert BTC.FEATURES["hop_length"] == 2048 and BTC.FEATURES["sample_rate"] == 22050
    assert BTC.FEATURES["scaling"] == "log" and BTC.FEATURES["log_eps"] == 1e-6
    assert abs(BTC.FEATURES["fmin"] - 32.70319566257483) < 1e-12
    assert registry.architecture_class("btc") is BTC
    timing = btc_mod.timing_signal(WIN, HID)[0]
    torch.testing.assert_close(timing, _ref_timing(WIN, HID))
