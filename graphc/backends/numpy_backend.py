"""The CPU backend: NumPy arrays, kernels run as NumPy calls."""

from __future__ import annotations

import numpy as np


class NumpyBackend:
    name = "cpu"
    xp = np

    def from_host(self, array):
        return array

    def to_host(self, array):
        return np.asarray(array)
