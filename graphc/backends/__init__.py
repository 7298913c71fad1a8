"""Backends: where arrays live and kernels run. ``get_backend(device)`` picks one by name."""

from __future__ import annotations

from ..errors import CompileError
from .protocol import Backend


def get_backend(device: str) -> Backend:
    """The backend for ``device``: "cpu" (NumPy) or "cuda" (CuPy, imported only when asked for)."""
    if device == "cpu":
        from .numpy_backend import BACKEND

        return BACKEND
    if device == "cuda" or device.startswith("cuda:"):
        from .cupy_backend import CupyBackend

        return CupyBackend(device)
    raise CompileError(f"compile: unknown device {device!r}, expected 'cpu' or 'cuda'")
