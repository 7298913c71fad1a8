"""fit: a small training loop over compiled functions and a DataLoader, returning a History.

The define-then-run API stays primary: ``fit`` only calls the functions you compiled, once per
batch, and averages what they return. tqdm draws a progress bar when it is installed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import GraphcError


@dataclass
class History:
    """Per-epoch means of what the train step returned (``loss``, ``accuracy``, ...), and the
    validation metrics as ``val_loss``, ``val_accuracy``; ``history["loss"]`` is a list per epoch."""

    history: dict[str, list[float]] = field(default_factory=dict)

    def __getitem__(self, key: str) -> list[float]:
        return self.history[key]

    @property
    def epochs(self) -> int:
        return max((len(v) for v in self.history.values()), default=0)

    def append(self, metrics: dict[str, float]) -> None:
        for k, v in metrics.items():
            self.history.setdefault(k, []).append(v)


def _call(fn, batch):
    """Call a compiled function on a batch: a dict by feed name, a tuple positionally."""
    if isinstance(batch, dict):
        return fn(batch)
    if isinstance(batch, (tuple, list)):
        return fn(*batch)
    return fn(batch)


def _metrics(out) -> dict[str, float]:
    """What a step returned, as named floats: a loss, (loss, accuracy, ...), or a dict."""
    if isinstance(out, dict):
        return {k: float(np.asarray(v)) for k, v in out.items()}
    if isinstance(out, (tuple, list)):
        if not 1 <= len(out) <= 2:
            raise GraphcError(f"fit: a step returning a list must return (loss,) or (loss, accuracy): "
                              f"got {len(out)} values; return a dict to name more")  # fmt: skip
        return dict(zip(("loss", "accuracy"), (float(np.asarray(v)) for v in out)))
    return {"loss": float(np.asarray(out))}


def _size(batch) -> int:
    if isinstance(batch, dict):
        return len(next(iter(batch.values())))
    return len(batch[0] if isinstance(batch, (tuple, list)) else batch)


class _Mean:
    """Running means of named metrics, weighted by batch size."""

    def __init__(self):
        self.sums: dict[str, float] = {}
        self.count = 0

    def add(self, metrics: dict[str, float], n: int) -> None:
        for k, v in metrics.items():
            self.sums[k] = self.sums.get(k, 0.0) + v * n
        self.count += n

    def means(self, prefix: str = "") -> dict[str, float]:
        return {prefix + k: s / self.count for k, s in self.sums.items()} if self.count else {}


def evaluate(fn, data) -> dict[str, float]:
    """Means of what ``fn`` returns over ``data``: a DataLoader (or any iterable of batches), or
    one batch (a tuple or dict of arrays), weighted by batch size."""
    batches = [data] if isinstance(data, (tuple, dict)) else data
    mean = _Mean()
    for batch in batches:
        mean.add(_metrics(_call(fn, batch)), _size(batch))
    return mean.means()


def fit(train_step, loader, epochs: int = 1, val_fn=None, val_data=None, progress: bool = True) -> History:
    """Train for ``epochs`` passes over ``loader``, calling ``train_step`` on every batch.

    Parameters
    ----------
    train_step : compiled function
        Called with each batch (a dict batch by feed name, a tuple positionally, so compile it with
        ``inputs=[...]``); returns the loss, ``(loss, accuracy)``, or a dict of named metrics.
    loader : DataLoader or a re-iterable of batches
    epochs : int
    val_fn, val_data : compiled function and a DataLoader or one batch, optional
        Evaluated after every epoch (in inference mode, if you compiled it so); its metrics are
        recorded with a ``val_`` prefix.
    progress : bool
        A tqdm progress bar per epoch with the running loss and accuracy (nothing without tqdm).

    Returns
    -------
    History
    """
    if (val_fn is None) != (val_data is None):
        raise GraphcError("fit: give both val_fn and val_data, or neither")
    bar = None
    if progress:
        try:
            from tqdm.auto import tqdm as bar
        except ImportError:  # progress bars are optional
            bar = None
    history = History()
    for epoch in range(epochs):
        # The bar is advanced by hand, never given the loader: tqdm.auto's (asyncio) tqdm calls iter()
        # on what it wraps when created, which would start a second DataLoader epoch each epoch.
        shown = None
        if bar is not None:
            total = len(loader) if hasattr(loader, "__len__") else None
            shown = bar(total=total, desc=f"epoch {epoch + 1}/{epochs}", leave=True)
        mean = _Mean()
        for batch in loader:
            mean.add(_metrics(_call(train_step, batch)), _size(batch))
            if shown is not None:
                shown.set_postfix({k: f"{v:.4f}" for k, v in mean.means().items()}, refresh=False)
                shown.update()
        metrics = mean.means()
        if val_fn is not None:
            metrics.update({f"val_{k}": v for k, v in evaluate(val_fn, val_data).items()})
            if shown is not None:
                shown.set_postfix({k: f"{v:.4f}" for k, v in metrics.items()})
        if shown is not None:
            shown.close()
        history.append(metrics)
    return history
