"""The ``ad-buyer-storage`` command line (see :func:`main`)."""

from ad_buyer_storage.cli.main import main

__all__ = ["main"]
