"""The ``graphc`` command-line tool, at the edge of the package: it only uses the public pipeline
(compile, save, load) and the runtime's introspection. ``main`` is the console-script entry point."""

from .main import main

__all__ = ["main"]
