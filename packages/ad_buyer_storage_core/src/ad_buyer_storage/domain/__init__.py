"""The buyer agent's domain on top of the generic store: entities, their collections, the
seed's helpers (:class:`Storage`), locks and rate limits."""
