"""Serialize: graphs and compiled functions to a documented, versioned JSON format and back.

``save`` writes atomically (temp file, fsync, rename); ``load`` treats a file as untrusted data:
no eval, no pickle, no imports; a JSON Schema check, then resource limits, then every node is
rebuilt through the op registry with shape inference re-run. Every failure is a FormatError.
"""

from .arrays import LoadLimits
from .load import load, restore_checkpoint
from .save import save, save_checkpoint

__all__ = ["LoadLimits", "load", "restore_checkpoint", "save", "save_checkpoint"]
