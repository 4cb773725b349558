"""Entry point of the built-in ``memory`` backend: registered exactly like a third-party one."""

from __future__ import annotations

from .hookspecs import hookimpl
from .registry import BackendSpec


@hookimpl
def ad_buyer_storage_backends() -> list[BackendSpec]:
    return [
        BackendSpec(
            "memory",
            "ad_buyer_storage.memory:create_backend",
            description="in-process dict: the contract's reference implementation, for tests",
            url_schemes=("memory",),
        )
    ]
