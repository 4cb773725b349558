"""A plugin whose import fails, as when its driver is missing."""

import ad_buyer_storage_no_such_driver  # type: ignore[import-not-found]  # noqa: F401
