"""The backend interface: what the executor needs from a device (arrays in, arrays out)."""

from __future__ import annotations

from typing import Any, Protocol


class Backend(Protocol):
    """A device that holds arrays and runs op kernels written against its array module ``xp``."""

    name: str
    xp: Any  # the array module (numpy, cupy) that OpDef kernels are written against

    def from_host(self, array) -> Any:
        """A device array holding the host (NumPy) array's data."""

    def to_host(self, array) -> Any:
        """A NumPy array with the device array's data (never aliasing device memory)."""

    def bind(self, node, **options) -> Any:
        """The node's kernel bound to this device: ``kernel(*arrays, out=None)``. Fused nodes get a
        kernel generated from their body (blocked ufuncs on NumPy; CUDA C on GPUs); ops with an
        ``OpDef.bind`` hook (control flow) build their own, given ``options`` (check_numerics)."""

    def bind_all(self, nodes, **options) -> list:
        """``bind`` for each of one plan's nodes, given together so that a backend can build their
        kernels at once (the CPU backend compiles its C loops as one module)."""
