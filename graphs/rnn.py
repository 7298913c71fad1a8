"""A vanilla tanh RNN, declared once as a static graph with a scan, trained by backpropagation
through time that graphc derives itself (the gradient of the scan is a reverse scan).

The task is synthetic: the input is a sequence of noisy values, the target at every step is the
first input feature from ``delay`` steps earlier (zero before that), so the network must carry a
memory through its hidden state. Run ``python graphs/rnn.py``: the loss falls from about the
target's variance to a small fraction of it. ``build()`` returns the pieces, so tests and tools
can reuse the definition.
"""

from __future__ import annotations

import numpy as np

import graphc as gc


def task(rng: np.random.Generator, steps: int, batch: int, n_in: int, delay: int = 2, dtype="float32"):
    """Inputs (steps, batch, n_in) and targets (steps, batch, 1): the first feature, delayed."""
    xs = rng.uniform(-1.0, 1.0, (steps, batch, n_in))
    ys = np.zeros((steps, batch, 1))
    ys[delay:, :, 0] = xs[:-delay, :, 0]
    return xs.astype(dtype), ys.astype(dtype)


def init_params(n_in: int, n_hidden: int, n_out: int, seed: int = 0, dtype="float32") -> dict:
    rng = np.random.default_rng(seed)
    return {
        "wx": (rng.standard_normal((n_in, n_hidden)) / np.sqrt(n_in)).astype(dtype),
        "wh": (rng.standard_normal((n_hidden, n_hidden)) * (0.9 / np.sqrt(n_hidden))).astype(dtype),
        "b": np.zeros(n_hidden, dtype),
        "wy": (rng.standard_normal((n_hidden, n_out)) / np.sqrt(n_hidden)).astype(dtype),
        "by": np.zeros(n_out, dtype),
    }


def build(n_in=3, n_hidden=24, n_out=1, steps=10, lr=0.5, momentum=0.9, dtype="float32", seed=0):
    """The RNN over a sequence of ``steps`` (any batch size), its loss, gradients and a train step
    (SGD with momentum, updating the parameters in place), in a fresh graph."""
    with gc.Graph("rnn") as graph:
        xs = gc.placeholder((steps, None, n_in), dtype, name="xs")  # time-major: (time, batch, features)
        ys = gc.placeholder((steps, None, n_out), dtype, name="ys")
        p = {k: gc.variable(v, name=k) for k, v in init_params(n_in, n_hidden, n_out, seed, dtype).items()}
        h0 = gc.zeros_like(xs[0] @ p["wx"])  # (batch, hidden): the batch size is known when called

        def cell(h, x):
            h = gc.tanh(x @ p["wx"] + h @ p["wh"] + p["b"])
            return h, h

        _, hs = gc.scan(cell, h0, xs)  # hs: every step's hidden state, (steps, batch, hidden)
        preds = hs @ p["wy"] + p["by"]
        loss = gc.mean(gc.square(preds - ys), name="loss")
        grads = gc.grad(loss, list(p.values()))
        velocity = {k: gc.variable(np.zeros_like(v.value), name=f"v_{k}", trainable=False) for k, v in p.items()}
        updates = []
        for (k, var), g in zip(p.items(), grads):
            v_new = momentum * velocity[k] + g
            updates += [(velocity[k], v_new), (var, var - lr * v_new)]
        step = gc.compile(loss, updates=updates)
        predict = gc.compile(preds, inputs=[xs])
        loss_and_grads = gc.compile([loss, *grads])
    return dict(graph=graph, xs=xs, ys=ys, params=p, loss=loss, grads=grads, step=step, predict=predict,
                loss_and_grads=loss_and_grads)  # fmt: skip


def numpy_bptt(params: dict, xs: np.ndarray, ys: np.ndarray) -> tuple[float, dict]:
    """The same loss and its gradients, by hand: forward over time, then backward over time."""
    wx, wh, b, wy, by = (params[k] for k in ("wx", "wh", "b", "wy", "by"))
    steps, batch, _ = xs.shape
    hs = np.zeros((steps + 1, batch, wh.shape[0]), xs.dtype)  # hs[t + 1] is the state after step t
    for t in range(steps):
        hs[t + 1] = np.tanh(xs[t] @ wx + hs[t] @ wh + b)
    err = hs[1:] @ wy + by - ys
    loss = np.mean(err**2)
    d_pred = 2 * err / err.size
    g = {"wy": np.einsum("tbh,tbo->ho", hs[1:], d_pred), "by": d_pred.sum((0, 1))}
    g.update(wx=np.zeros_like(wx), wh=np.zeros_like(wh), b=np.zeros_like(b))
    dh = np.zeros_like(hs[0])
    for t in reversed(range(steps)):
        dh = dh + d_pred[t] @ wy.T
        da = dh * (1 - hs[t + 1] ** 2)
        g["wx"] += xs[t].T @ da
        g["wh"] += hs[t].T @ da
        g["b"] += da.sum(0)
        dh = da @ wh.T
    return float(loss), g


def main(iterations: int = 300, batch: int = 32) -> None:
    net = build()
    rng = np.random.default_rng(1)
    steps, n_in = net["xs"].shape[0], net["xs"].shape[2]
    first = None
    for it in range(iterations):
        xs, ys = task(rng, steps, batch, n_in)
        loss = float(net["step"](xs=xs, ys=ys))
        first = first if first is not None else loss
        if it % 50 == 0 or it == iterations - 1:
            print(f"iteration {it:4d}  loss {loss:.5f}")
    print(f"loss fell {first / loss:.0f}x in {iterations} iterations")


if __name__ == "__main__":
    main()
