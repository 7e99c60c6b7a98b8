"""Training-data tools for keychords (not part of the installed package).

Rendering POP909 to labelled audio, the train/validation/test split, and the
tuning of decoding parameters on development data. See ``training/README.md``.
"""
