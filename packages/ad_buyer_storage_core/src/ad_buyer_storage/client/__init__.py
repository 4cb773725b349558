"""What users hold: :class:`~ad_buyer_storage.client.store.Store`, the generic API, with the
codec, validation and coalescing it is built from."""
