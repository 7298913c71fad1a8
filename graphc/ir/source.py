"""Provenance: the file and line of the user's code that created a node."""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


@dataclass(frozen=True)
class Source:
    """Where a node was defined: a file and a line of the user's code (not graphc's)."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


_override = threading.local()


class source_override:
    """Attribute the nodes built inside to ``source`` (autodiff: a gradient node cites its forward
    node). A class, not a generator context manager: passes enter one per rewritten node."""

    __slots__ = ("source", "previous")

    def __init__(self, source: Source | None):
        self.source = source

    def __enter__(self) -> None:
        self.previous = getattr(_override, "source", None)
        _override.source = self.source

    def __exit__(self, *exc) -> None:
        _override.source = self.previous


def user_source() -> Source | None:
    """The innermost stack frame outside the graphc package: the user's line that built a node."""
    forced = getattr(_override, "source", None)
    if forced is not None:
        return forced
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame = frame.f_back
    if frame is None:
        return None
    return Source(frame.f_code.co_filename, frame.f_lineno)
