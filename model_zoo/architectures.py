"""Imports every architecture module so that each registers itself."""

from . import btc, crema, lvchordia, skey, student  # noqa: F401
