"""keychords model layer: features, architectures, vocabularies, registry.

Conventions shared by every model:

* A model's card names its feature front end (:mod:`model_zoo.features`);
  the network's ``forward`` takes that front end's output ``(B, H, F, T)``.
* Chord models return a dict with ``"chord"``: logits ``(B, T, 170)`` in
  :mod:`model_zoo.vocab` order (optionally ``"root"``, ``"bass"``: ``(B, T,
  13)`` logits, pitch classes then N, and ``"pitch"``: ``(B, T, 12)`` logits).
  Each declares how it runs over a track: ``receptive_field()`` (frames each
  side that an output frame sees; None: the whole track, run in one pass) and
  ``batches_tracks`` (True when ``forward_many`` takes whole tracks of
  different lengths at once).
* Key models return ``{"key": logits (B, 24)}`` in :mod:`model_zoo.keys` order.
  They see equal segments of ``segment_seconds`` (card extra, default 15 s)
  or, when that is null, whole tracks (``batches_tracks``: through
  ``forward_many``).
"""

from .registry import (ModelCard, ModelError, default_model, find_card,  # noqa: F401
                       list_models, load_model, save_model, user_model_dir)
