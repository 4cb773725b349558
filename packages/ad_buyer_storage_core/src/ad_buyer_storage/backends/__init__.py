"""The backends that ship in core: ``memory``, the contract's reference implementation."""
