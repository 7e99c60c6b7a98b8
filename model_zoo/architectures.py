"""Imports every architecture module so that each registers itself."""

from . import btc, crema, keynet, skey, student  # noqa: F401
