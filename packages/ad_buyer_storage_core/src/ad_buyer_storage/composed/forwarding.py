"""How a backend made of backends (a breaker, the mirror, the hybrid router) offers hook protocols.

The rule (see :mod:`ad_buyer_storage.contract.protocol`): a wrapper claims the flags its parts
give and forwards every flag's methods explicitly; a *hook* protocol (``SupportsQuery``,
``SupportsTelemetry``...), which changes only speed or reports, it has exactly when its parts
have it, so ``isinstance`` answers as it would on them, on every Python (no ``__getattr__``
pass-through: 3.12 stopped consulting it in protocol checks).

A wrapper class derives from :class:`Forwarding` and lists its hook mixins in ``HOOKS``: each
mixin is a subclass of the wrapper adding the protocol's methods, forwarding explicitly.
Constructing the wrapper gives an instance of the (cached) subclass made of the wrapper and the
mixins of the hooks ``_hooks_wanted`` asks for, once per combination.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, ClassVar, Self, TypeVar

from ad_buyer_storage.contract.protocol import StorageBackend

__all__ = ["Forwarding", "has_hook", "with_hooks"]

W = TypeVar("W")

#: (wrapper class, mixins) -> the class combining them; and every class made so.
_made: dict[tuple[type, tuple[type, ...]], type] = {}
_generated: set[type] = set()


def has_hook(protocol: type, parts: Iterable[StorageBackend]) -> bool:
    """Whether any of *parts* has the hook *protocol*."""
    return any(isinstance(part, protocol) for part in parts)


def with_hooks(cls: type[W], hooks: Sequence[tuple[type, type]], wanted: Iterable[type]) -> type[W]:
    """*cls* with the mixin of each protocol of *wanted* (from *hooks*, in its order), cached."""
    chosen = set(wanted)
    mixins = tuple(mixin for protocol, mixin in hooks if protocol in chosen)
    if not mixins:
        return cls
    made = _made.get((cls, mixins))
    if made is None:
        attributes = {"__module__": cls.__module__, "__qualname__": cls.__qualname__, "__doc__": cls.__doc__}
        made = _made[(cls, mixins)] = type(cls.__name__, (*mixins, cls), attributes)
        _generated.add(made)
    return made


class Forwarding:
    """Base of wrappers: ``Wrapper(...)`` is an instance of the wrapper with the mixins (its
    ``HOOKS``) of the hook protocols its parts have."""

    #: (hook protocol, mixin adding its forwarding methods), in the order mixins are combined.
    HOOKS: ClassVar[tuple[tuple[type, type], ...]] = ()

    def __new__(cls, *args: Any, **kwargs: Any) -> Self:
        if cls in _generated or not cls.HOOKS or not (args or kwargs):  # no arguments: copy, unpickling
            return super().__new__(cls)
        made = with_hooks(cls, cls.HOOKS, cls._hooks_wanted(*args, **kwargs))
        instance: Self = super().__new__(made)
        return instance

    @classmethod
    def _hooks_wanted(cls, *args: Any, **kwargs: Any) -> Iterable[type]:
        """The hook protocols an instance built from these arguments has (its parts')."""
        return ()
