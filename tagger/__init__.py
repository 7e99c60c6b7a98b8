"""keychords: the analysis engine and the standalone batch tagger."""

__version__ = "0.1.0"


def version() -> str:
    """The installed distribution's version (the source's ``__version__`` when
    running from a checkout that is not installed)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version
    try:
        return dist_version("beets-keychords")
    except PackageNotFoundError:
        return __version__
