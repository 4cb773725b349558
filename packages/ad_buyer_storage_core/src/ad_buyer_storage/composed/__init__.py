"""Backends made of backends: the hybrid router, the mirror, and the replication they share."""
