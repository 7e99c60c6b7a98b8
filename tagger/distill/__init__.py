"""Distillation: turn a music library into training data and train models on it.

Where training lives:

* ``tagger/distill/`` (this package, installed): the library behind the
  ``keychords distill``, ``train-key`` and ``eval`` commands that users run
  on their own music.
* ``training/`` (not installed): the scripts and notes that reproduce the
  shipped models (data splits, renders, tuning, shipping); see its README.
* ``model_zoo/``: architectures, the registry and the importers of foreign
  checkpoints; nothing there trains.

``keychords distill`` (chord student) and ``keychords train-key`` (S-KEY
ChromaNet) share one pipeline::

    library -> scan -> decode -> features cache (float16 shards, resumable)
      -> teacher posteriors (cached) -> stage 1: pseudo-labels
      -> stage 2: ground truth (.lab) + selective KD  -> evaluate -> register

Modules:

* :mod:`.cache`: the on-disk dataset cache (sqlite index + ``.npy`` shards).
* :mod:`.labels`: ``.lab`` / ``.key`` files -> frame labels and key indices.
* :mod:`.teacher`: running a registered chord model as a teacher.
* :mod:`.augment`: pitch shifts in the CQT domain and the matching label moves.
* :mod:`.losses`: focal / soft-target / selective-KD losses and the S-KEY losses.
* :mod:`.loop`: the training loop both trainers share (checkpoints, early stopping).
* :mod:`.train_chords`: stage 1 and stage 2 training with checkpoints.
* :mod:`.train_key`: self-supervised S-KEY training and key-order calibration.
* :mod:`.evaluate`: mir_eval chord and key scores, agreement, speed.
* :mod:`.phases`: the steps both training commands take, and ``CommandError``.
* :mod:`.chord_phases`, :mod:`.key_phases`: the steps of ``distill`` and
  ``train-key`` of their own.
* :mod:`.commands`: the ``distill``, ``train-key`` and ``eval`` subcommands.
"""
