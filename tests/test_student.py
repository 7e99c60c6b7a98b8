"""The chord student architecture (model_zoo.student): shapes, config, context, training."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from model_zoo import registry
from model_zoo.student import HEAD_SIZES, ChordStudent, LocalSelfAttention

N_BINS = ChordStudent.FEATURES["n_bins"]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Small tensors: one thread is as fast, and immune to a busy machine.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def features(b: int, t: int) -> torch.Tensor:
    """Random stand-ins for log1p-scaled CQT frames, (B, 1, 216, T)."""
    return torch.rand(b, 1, N_BINS, t) * 3.0


def randomise_norms(net: torch.nn.Module) -> None:
    """Give every BatchNorm non-trivial running statistics (as after training)."""
    g = torch.Generator().manual_seed(1)
    for m in net.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.2)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)


def test_features_config():
    f = ChordStudent.FEATURES
    assert f["sample_rate"] / f["hop_length"] == pytest.approx(44100 / 4096)
    assert f["bins_per_octave"] // 12 == ChordStudent.BINS_PER_SEMITONE == 3
    assert f["harmonics"] == [1] and f["scaling"] == "log1p"
    json.dumps(f)


@pytest.mark.parametrize("t", [1, 2, 23, 24, 25, 100, 257])
def test_forward_shapes(t):
    net = ChordStudent().eval()
    with torch.no_grad():
        out = net(features(3, t))
    assert set(out) == {"chord", "root", "bass", "pitch"}
    assert out["chord"].shape == (3, t, 170)
    assert out["root"].shape == (3, t, 13)
    assert out["bass"].shape == (3, t, 13)
    assert out["pitch"].shape == (3, t, 12)
    assert all(torch.isfinite(v).all() for v in out.values())


def test_train_mode_shapes_and_t1():
    net = ChordStudent().train()
    out = net(features(3, 1))
    assert out["chord"].shape == (3, 1, 170)
    out = net(features(2, 37))
    assert out["chord"].shape == (2, 37, 170)


@pytest.mark.parametrize("heads", [[], ["pitch"], ["root", "bass"], ["root", "bass", "pitch"]])
def test_heads_follow_config(heads):
    net = ChordStudent(heads=heads).eval()
    with torch.no_grad():
        out = net(features(2, 10))
    assert set(out) == {"chord", *heads}
    for name in heads:
        assert out[name].shape == (2, 10, HEAD_SIZES[name])
    assert list(out)[0] == "chord"


def test_bad_config_and_input_rejected():
    with pytest.raises(ValueError):
        ChordStudent(heads=["key"])
    with pytest.raises(ValueError):
        ChordStudent(kernel_size=4)
    with pytest.raises(ValueError):
        ChordStudent()(torch.zeros(1, 2, N_BINS, 8))
    with pytest.raises(ValueError):
        ChordStudent()(torch.zeros(1, 1, 200, 8))


def test_parameter_budget():
    n = sum(p.numel() for p in ChordStudent().parameters())
    assert 300_000 <= n <= 1_500_000
    small = sum(p.numel() for p in ChordStudent(heads=[]).parameters())
    assert small < n


def test_config_is_json_and_rebuilds_identically():
    net = ChordStudent(dim=64, stem_channels=[8, 8], dilations=[1, 3], heads=["root"],
                       attention_window=5).eval()
    randomise_norms(net)
    cfg = json.loads(json.dumps(net.config))
    assert cfg == net.config
    twin = ChordStudent(**cfg).eval()
    twin.load_state_dict(net.state_dict(), strict=True)
    x = features(2, 40)
    with torch.no_grad():
        a, b = net(x), twin(x)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k])


def test_state_dict_has_only_weights_and_stats():
    # No derived tensors (masks, index tables) are saved with the weights.
    keys = ChordStudent().state_dict().keys()
    assert not [k for k in keys if "mask" in k or "index" in k]


def test_registry_round_trip(tmp_path):
    net = ChordStudent().eval()
    randomise_norms(net)
    card = registry.save_model(net, "s-test", task="chord", features=ChordStudent.FEATURES,
                               directory=tmp_path)
    assert card.architecture == "student"
    assert card.parameters == sum(p.numel() for p in net.parameters())
    card2 = registry.read_card(card.card_path)
    assert card2.config == net.config and card2.features == ChordStudent.FEATURES
    # registry.load_model imports the architecture named by the card (registry.ARCHITECTURES).
    _, loaded = registry.load_model(card2)
    assert isinstance(loaded, ChordStudent) and not loaded.training
    x = features(2, 50)
    with torch.no_grad():
        a, b = net(x), loaded(x)
    for k in a:
        assert torch.equal(a[k], b[k])


def test_gradient_reaches_every_parameter():
    net = ChordStudent(dropout=0.0).train()
    out = net(features(2, 40))
    loss = sum(v.float().square().mean() for v in out.values())
    loss.backward()
    missing = [n for n, p in net.named_parameters()
               if p.grad is None or not torch.isfinite(p.grad).all() or p.grad.abs().sum() == 0]
    assert not missing


@pytest.mark.parametrize("cfg", [{}, {"attention_layers": 0},
                                 {"dilations": [1, 5], "attention_window": 3},
                                 {"stem_channels": [8, 8], "attention_layers": 2}])
def test_receptive_field_is_exact(cfg):
    """Output frame t depends on input frames t-k..t+k (k = receptive_field()) only."""
    net = ChordStudent(**cfg).eval()
    randomise_norms(net)
    k = net.receptive_field()
    t_len = 2 * k + 41
    x = features(1, t_len).requires_grad_(True)
    for t0 in (k + 3, k + 20, t_len - k - 1):
        out = net(x)["chord"][0, t0]
        (grad,) = torch.autograd.grad(out.sum(), x)
        frames = grad[0, 0].abs().sum(0).nonzero().flatten().tolist()
        assert frames == list(range(t0 - k, t0 + k + 1))


def test_window_matches_whole_sequence_inside_the_context():
    """Frames at least k from a window's edges are exactly as in the whole sequence,
    so that overlapping windows can be stitched without seams."""
    net = ChordStudent().eval()
    randomise_norms(net)
    k = net.receptive_field()
    x = features(1, 300)
    lo, hi = 30, 30 + 2 * k + 50
    with torch.no_grad():
        whole = net(x)
        part = net(x[..., lo:hi])
    for name in whole:
        ref = whole[name][:, lo + k: hi - k]
        got = part[name][:, k: hi - lo - k]
        torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)
    # ... and the edge frames do differ (the context really is used).
    assert not torch.allclose(part["chord"][:, 0], whole["chord"][:, lo], atol=1e-4)


def test_batch_items_are_independent_in_eval():
    net = ChordStudent().eval()
    randomise_norms(net)
    x = features(3, 30)
    with torch.no_grad():
        together = net(x)["chord"]
        alone = net(x[1:2])["chord"]
    torch.testing.assert_close(together[1:2], alone, rtol=1e-4, atol=1e-4)


def _banded_attention_reference(att: LocalSelfAttention, x: torch.Tensor) -> torch.Tensor:
    b, t, d = x.shape
    h, w = att.n_heads, att.window
    q, k, v = att.qkv(x).view(b, t, 3, h, d // h).permute(2, 0, 3, 1, 4)
    scores = q @ k.transpose(-1, -2) / math.sqrt(d // h)
    pos = torch.arange(t)
    rel = pos[None, :] - pos[:, None]
    bias = att.rel_bias[:, (rel + w).clamp(0, 2 * w)]
    scores = scores + bias.masked_fill(rel.abs() > w, float("-inf"))
    o = scores.softmax(-1) @ v
    return att.out(o.transpose(1, 2).reshape(b, t, d))


@pytest.mark.parametrize("t", [1, 5, 16, 17, 50])
@pytest.mark.parametrize("chunk", [16, 23])
def test_local_attention_matches_dense_banded_attention(t, chunk):
    att = LocalSelfAttention(dim=32, n_heads=4, window=6).eval()
    with torch.no_grad():
        att.rel_bias.normal_()
        att.chunk = chunk
        x = torch.randn(2, t, 32)
        torch.testing.assert_close(att(x), _banded_attention_reference(att, x),
                                   rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_runs_under_autocast(dtype):
    net = ChordStudent().eval()
    x = features(2, 60)
    with torch.no_grad():
        ref = net(x)["chord"].softmax(-1)
        with torch.autocast("cpu", dtype=dtype):
            out = net(x)
    assert out["chord"].shape == (2, 60, 170)
    assert all(torch.isfinite(v.float()).all() for v in out.values())
    torch.testing.assert_close(out["chord"].float().softmax(-1), ref, atol=0.05, rtol=0)


def test_small_batch_overfits():
    """A few dozen steps on one random batch with fixed labels cut the loss a lot."""
    net = ChordStudent(dropout=0.0).train()
    x = features(2, 32)
    chord = torch.randint(0, 170, (2, 32))
    root = torch.randint(0, 13, (2, 32))
    opt = torch.optim.Adam(net.parameters(), lr=5e-3)

    def loss_fn():
        out = net(x)
        return (F.cross_entropy(out["chord"].reshape(-1, 170), chord.flatten())
                + F.cross_entropy(out["root"].reshape(-1, 13), root.flatten()))

    first = loss_fn().item()
    for _ in range(20):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()
    last = loss_fn().item()
    assert last < 0.2 * first, (first, last)


def test_track_context_block_sees_the_whole_track_and_starts_neutral():
    """A context block added to a trained student leaves its output unchanged at
    first; once trained, a frame's output depends on frames far outside the
    convolutional receptive field; output length stays T for any T."""
    torch.manual_seed(0)
    plain = ChordStudent().eval()
    randomise_norms(plain)
    ctx = ChordStudent(context_units=8).eval()
    missing, unexpected = ctx.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("context.") for k in missing)
    assert ctx.receptive_field() is None and plain.receptive_field() == 63
    assert "context_units" not in plain.config                  # older cards stay exact
    assert ChordStudent(**ctx.config).config == ctx.config
    x = features(1, 301)
    with torch.no_grad():
        torch.testing.assert_close(ctx(x)["chord"], plain(x)["chord"])
        torch.nn.init.normal_(ctx.context.proj.weight, std=0.5)
    x.requires_grad_(True)
    (grad,) = torch.autograd.grad(ctx(x)["chord"][0, 300].sum(), x)
    assert grad[0, 0, :, :10].abs().sum() > 0                    # 290 frames away
    for t in (1, 7, 8, 9, 64):
        with torch.no_grad():
            assert ctx(features(2, t))["chord"].shape == (2, t, 170)


def test_frame_blocks_start_as_identity_and_keep_the_receptive_field():
    """Per-frame blocks added to a trained student leave its output unchanged at
    first, add no context (a frame's output still ignores frames 64 away) and
    learn: after one step on a loss, the output changes."""
    torch.manual_seed(0)
    plain = ChordStudent().eval()
    randomise_norms(plain)
    grown = ChordStudent(frame_blocks=2, frame_mult=2).eval()
    missing, unexpected = grown.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("frame.") for k in missing)
    assert "frame_blocks" not in plain.config and grown.config["frame_blocks"] == 2
    assert grown.receptive_field() == plain.receptive_field() == 63
    x = features(1, 200)
    with torch.no_grad():
        torch.testing.assert_close(grown(x)["chord"], plain(x)["chord"])
    x.requires_grad_(True)
    (grad,) = torch.autograd.grad(grown(x)["chord"][0, 150].sum(), x)
    assert grad[0, 0, :, :150 - 63].abs().sum() == 0 and grad[0, 0, :, 150].abs().sum() > 0
    grown.train()
    opt = torch.optim.SGD(grown.frame.parameters(), lr=0.1)
    grown(features(2, 40))["chord"].square().mean().backward()
    opt.step()
    assert grown.frame[0].down.weight.abs().sum() > 0


def test_appended_dilated_blocks_start_as_identity_and_lengthen_the_field():
    """A student grown by dilated blocks (load_grown) first computes the old
    student's output, sees further (the field grows by each new dilation) and
    learns; weights that are not a prefix of its network are refused."""
    plain = ChordStudent(dim=32, dilations=[1, 2]).eval()
    randomise_norms(plain)
    grown = ChordStudent(dim=32, dilations=[1, 2, 8, 16]).eval()
    missing = grown.load_grown(plain.state_dict())
    assert missing and all(k.startswith(("temporal.2.", "temporal.3.")) for k in missing)
    assert grown.receptive_field() == plain.receptive_field() + 24
    assert not grown.temporal[3].mix.weight.any()
    x = features(1, 120)
    with torch.no_grad():
        torch.testing.assert_close(grown(x)["chord"], plain(x)["chord"])
    grown.train()
    opt = torch.optim.SGD(grown.temporal[2:].parameters(), lr=0.1)
    grown(features(2, 60))["chord"].square().mean().backward()
    opt.step()
    assert grown.temporal[2].mix.weight.abs().sum() > 0
    x = features(1, 120).requires_grad_(True)
    (grad,) = torch.autograd.grad(grown.eval()(x)["chord"][0, 60].sum(), x)
    field = grown.receptive_field()
    assert grad[0, 0, :, 60 - field].abs().sum() > 0 and grad[0, 0, :, :60 - field].abs().sum() == 0
    with pytest.raises(ValueError, match="do not fit"):
        ChordStudent(dim=32, dilations=[1]).load_grown(plain.state_dict())


def _shifted(x: torch.Tensor, semitones: int) -> torch.Tensor:
    """Features of audio pitch-shifted up by ``semitones``: bins move up, silence (0) enters."""
    k = 3 * semitones
    out = torch.zeros_like(x)
    if k >= 0:
        out[:, :, k:] = x[:, :, : N_BINS - k]
    else:
        out[:, :, :k] = x[:, :, -k:]
    return out


def test_shift_average_is_the_mean_of_the_shifted_passes_moved_back():
    from model_zoo.vocab import transpose
    plain = ChordStudent(dilations=[1, 2], dim=32).eval()
    randomise_norms(plain)
    tta = ChordStudent(dilations=[1, 2], dim=32, shift_average=[-1, 0, 2]).eval()
    tta.load_state_dict(plain.state_dict())
    assert tta.config["shift_average"] == [-1, 0, 2] and "shift_average" not in plain.config
    x = features(2, 40)
    with torch.no_grad():
        got = tta(x)
        runs = {s: plain(_shifted(x, s)) for s in (-1, 0, 2)}
    chord = sum(runs[s]["chord"].log_softmax(-1)[..., [transpose(i, s) for i in range(170)]]
                for s in runs) / 3
    root = sum(torch.cat([runs[s]["root"].log_softmax(-1)[..., [(i + s) % 12 for i in range(12)]],
                          runs[s]["root"].log_softmax(-1)[..., 12:]], -1) for s in runs) / 3
    pitch = sum(runs[s]["pitch"][..., [(i + s) % 12 for i in range(12)]] for s in runs) / 3
    assert torch.allclose(got["chord"], chord, atol=1e-5)
    assert torch.allclose(got["root"], root, atol=1e-5)
    assert torch.allclose(got["pitch"], pitch, atol=1e-5)
    tta.train()       # training runs the plain network
    plain.train()
    torch.manual_seed(3)
    a = tta(x)["chord"]
    torch.manual_seed(3)
    assert torch.equal(a, plain(x)["chord"])


def test_shift_average_round_trips_and_rejects_repeats(tmp_path):
    net = ChordStudent(dilations=[1], dim=16, shift_average=[0, 1]).eval()
    registry.save_model(net, "tta", task="chord", features=ChordStudent.FEATURES,
                        directory=tmp_path)
    card, back = registry.load_model(tmp_path / "tta.json")
    assert card.config["shift_average"] == [0, 1] and back.shifts == [0, 1]
    with pytest.raises(ValueError, match="twice"):
        ChordStudent(shift_average=[1, 1])


@pytest.mark.parametrize("shift", [1, -1])
def test_a_single_shifted_pass_of_the_shipped_student_still_names_the_chord(shift):
    """Moved back the wrong way, a pass on audio shifted by one semitone would name D
    or A# major for a C major triad: this pins the direction of the permutation."""
    import numpy as np
    from model_zoo import vocab
    from model_zoo.features import FrontEnd
    card = registry.find_card("kc-chord-v2.1")
    t = np.arange(22050 * 6) / 22050
    hz = [130.81, 164.81, 196.0, 261.63, 329.63, 392.0]             # C3 E3 G3 C4 E4 G4
    audio = sum(0.1 * np.sin(2 * np.pi * f * t) for f in hz).astype(np.float32)
    x = FrontEnd(**ChordStudent.FEATURES)(torch.from_numpy(audio)[None])
    one = ChordStudent(**{**card.config, "shift_average": [shift]}).eval()
    one.load_state_dict(registry.load_model(card)[1].state_dict())
    with torch.no_grad():
        pred = one(x)["chord"][0].argmax(-1)
    assert (pred == vocab.LABELS.index("C:maj")).float().mean() > 0.8
