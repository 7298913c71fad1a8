"""The CS231n two-layer network: declared once, differentiated symbolically, trained by one call.

Run it with ``make demo`` (or ``python graphs/two_layer_net.py``); it prints the falling loss.
``build()`` returns the pieces for tests and tools; ``graphc compile graphs/two_layer_net.py`` saves the step.
"""

from __future__ import annotations

import numpy as np

import graphc as gc


def build(n_in=1000, n_hidden=100, n_out=10, lr=1e-5, dtype="float32", seed=0):
    """The network, its loss, gradients and the SGD train step, in a fresh graph."""
    rng = np.random.default_rng(seed)
    with gc.Graph("two_layer_net") as graph:
        x = gc.placeholder((None, n_in), dtype, name="x")
        y = gc.placeholder((None, n_out), dtype, name="y")
        w1 = gc.variable(rng.standard_normal((n_in, n_hidden)).astype(dtype), name="w1")
        w2 = gc.variable(rng.standard_normal((n_hidden, n_out)).astype(dtype), name="w2")
        h = gc.relu(x @ w1)
        y_pred = h @ w2
        loss = gc.mean(gc.sum((y_pred - y) ** 2, axis=1), name="loss")
        gw1, gw2 = gc.grad(loss, [w1, w2])
        updates = [gc.assign(w1, w1 - lr * gw1), gc.assign(w2, w2 - lr * gw2)]
        step = gc.compile(loss, updates=updates)
        predict = gc.compile(y_pred, inputs=[x])
    # "outputs" and "updates" are what `graphc compile` compiles (the train step; see docs/cli.md)
    return dict(graph=graph, x=x, y=y, w1=w1, w2=w2, loss=loss, grads=(gw1, gw2), step=step, predict=predict,
                outputs=loss, updates=updates)  # fmt: skip


def main(steps: int = 50) -> None:
    net = build()
    rng = np.random.default_rng(1)
    xb = rng.standard_normal((64, 1000)).astype("float32")
    yb = rng.standard_normal((64, 10)).astype("float32")
    first = None
    for t in range(steps):
        loss = float(net["step"](x=xb, y=yb))
        first = first if first is not None else loss
        if t % 5 == 0 or t == steps - 1:
            print(f"step {t:3d}  loss {loss:14.2f}")
    print(f"loss fell {first / loss:.0f}x in {steps} steps")


if __name__ == "__main__":
    main()
