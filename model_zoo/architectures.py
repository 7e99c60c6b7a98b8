"""Imports every architecture module so that each registers itself."""

from . import btc, crema, skey, student  # noqa: F401
