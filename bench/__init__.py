"""Benchmarks of ad-buyer-storage against the raw drivers and py-key-value-aio (not installed with
the libraries; run with ``nox -s bench``)."""
