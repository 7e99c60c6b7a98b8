"""keychords: the analysis engine and the standalone batch tagger."""

__version__ = "0.1.0"
