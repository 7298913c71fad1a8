"""The CUDA backend: CuPy arrays; the same OpDef kernels run with ``xp = cupy``.

CuPy is an optional extra (``pip install graphc[cuda]``); it is imported only when a function is
compiled for a CUDA device, and a clear error says what is missing.
"""

from __future__ import annotations

from ..errors import CompileError


class CupyBackend:
    def __init__(self, device: str = "cuda"):
        try:
            import cupy
        except ImportError:
            raise CompileError(
                f"device {device!r} needs CuPy, which is not installed: pip install 'graphc[cuda]'"
            ) from None
        try:
            count = cupy.cuda.runtime.getDeviceCount()
        except Exception as e:  # CuPy raises its own CUDARuntimeError when no driver is present
            raise CompileError(f"device {device!r}: no CUDA device is available ({e})") from None
        index = int(device.split(":")[1]) if ":" in device else 0
        if not 0 <= index < count:
            raise CompileError(f"device {device!r}: there are {count} CUDA devices")
        self.name = f"cuda:{index}"
        self.xp = cupy
        self.device = cupy.cuda.Device(index)

    def from_host(self, array):
        with self.device:
            return self.xp.asarray(array)

    def to_host(self, array):
        return self.xp.asnumpy(array)

    def bind_all(self, nodes, **options) -> list:
        return [self.bind(n, **options) for n in nodes]

    def bind(self, node, **options):
        import functools

        from ..ops.registry import REGISTRY

        opdef = REGISTRY[node.op]
        if opdef.bind is not None:  # control flow: bodies compiled once for this device
            return opdef.bind(node, self, **options)
        return functools.partial(opdef.kernel, self.xp, **node.attrs)
