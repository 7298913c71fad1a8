"""Optional peers for tools/bench.py: the same workloads in PyTorch and JAX (CPU).

Takes a workload's shared data dict and returns ``(run, result)``: the timed call, and a function
that resets any state, runs once and returns the named outputs to check (None: ``{"y": run()}``).
Used only when the framework is importable; never a dependency of graphc or its tests.
"""

from __future__ import annotations

import importlib.util

import numpy as np


# -- PyTorch -------------------------------------------------------------------------------------
def torch_w1(d):
    import torch

    p = {k: torch.from_numpy(v) for k, v in d["params"].items()}
    xv = d["x"]

    def run():
        with torch.inference_mode():
            x = torch.from_numpy(xv)
            return torch.softmax(torch.relu(x @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"], dim=-1).numpy()

    return run, None


def _torch_sgd_step(d, logits_of):
    """A PyTorch SGD step on softmax cross-entropy of ``logits_of(x, params)`` (W2, W4T)."""
    import torch

    lr = d["lr"]
    p = {k: torch.tensor(v, requires_grad=True) for k, v in d["params"].items()}
    x, labels = torch.from_numpy(d["x"]), torch.from_numpy(d["labels"])

    def run():
        for t in p.values():
            t.grad = None
        loss = torch.nn.functional.cross_entropy(logits_of(x, p), labels)
        loss.backward()
        with torch.no_grad():
            for t in p.values():
                t.add_(t.grad, alpha=-lr)
        return loss.detach().numpy()

    def reset():
        with torch.no_grad():
            for k, t in p.items():
                t.copy_(torch.from_numpy(d["params"][k]))

    def result():
        reset()
        out = {"loss": run()}
        out.update({f"d_{k}": t.detach().numpy() - d["params"][k] for k, t in p.items()})
        reset()
        return out

    return run, result


def _torch_w2_logits(x, p):
    import torch

    h1 = torch.relu(x @ p["w1"] + p["b1"])
    h2 = torch.relu(h1 @ p["w2"] + p["b2"])
    return h2 @ p["w3"] + p["b3"]


def torch_w2(d):
    return _torch_sgd_step(d, _torch_w2_logits)


def _torch_w4_logits(x, p):
    import torch
    import torch.nn.functional as F

    h = F.max_pool2d(torch.relu(F.conv2d(x, p["k1"], p["b1"])), 2)
    h = F.max_pool2d(torch.relu(F.conv2d(h, p["k2"], p["b2"])), 2)
    return h.flatten(1) @ p["w3"] + p["b3"]


def torch_w4(d):
    import torch

    p = {k: torch.from_numpy(v) for k, v in d["params"].items()}
    xv = d["x"]

    def run():
        with torch.inference_mode():
            return _torch_w4_logits(torch.from_numpy(xv), p).numpy()

    return run, None


def torch_w4t(d):
    return _torch_sgd_step(d, _torch_w4_logits)


def torch_w3(d):
    import torch

    x, a, b = torch.from_numpy(d["x"]), d["a"], d["b"]
    return lambda: (torch.tanh(a * x + b) * torch.sigmoid(x) + 0.5 * x * x - 1.0).numpy(), None


# -- JAX -----------------------------------------------------------------------------------------
def jax_w1(d):
    import jax

    p = {k: jax.numpy.asarray(v) for k, v in d["params"].items()}
    f = jax.jit(lambda x, p: jax.nn.softmax(jax.nn.relu(x @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"], axis=-1))
    xv = d["x"]
    run = lambda: f(xv, p).block_until_ready()
    return run, lambda: {"y": np.asarray(run())}


def jax_w2(d):
    import jax
    import jax.numpy as jnp

    lr = d["lr"]

    def loss_fn(p, x, labels):
        h1 = jax.nn.relu(x @ p["w1"] + p["b1"])
        h2 = jax.nn.relu(h1 @ p["w2"] + p["b2"])
        logp = jax.nn.log_softmax(h2 @ p["w3"] + p["b3"], axis=-1)
        return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=1))

    @jax.jit
    def step(p, x, labels):
        loss, g = jax.value_and_grad(loss_fn)(p, x, labels)
        return jax.tree_util.tree_map(lambda w, gw: w - lr * gw, p, g), loss

    xv, lv = d["x"], d["labels"].astype(np.int32)  # JAX's default integer is 32-bit
    state = {}

    def run():
        state["p"], loss = step(state["p"], xv, lv)
        return loss.block_until_ready()

    def reset():
        state["p"] = {k: jnp.asarray(v) for k, v in d["params"].items()}

    def result():
        reset()
        out = {"loss": np.asarray(run())}
        out.update({f"d_{k}": np.asarray(v) - d["params"][k] for k, v in state["p"].items()})
        reset()
        return out

    reset()
    return run, result


def jax_w3(d):
    import jax

    a, b = d["a"], d["b"]
    f = jax.jit(lambda x: jax.numpy.tanh(a * x + b) * jax.nn.sigmoid(x) + 0.5 * x * x - 1.0)
    xv = d["x"]
    run = lambda: f(xv).block_until_ready()
    return run, lambda: {"y": np.asarray(run())}


# -- registry ------------------------------------------------------------------------------------
PEERS = {
    "torch": {"W1": torch_w1, "W2": torch_w2, "W3": torch_w3, "W4": torch_w4, "W4T": torch_w4t},
    "jax": {"W1": jax_w1, "W2": jax_w2, "W3": jax_w3},
}


def for_workload(workload_id: str) -> dict:
    """The importable peers that implement this workload: name -> factory."""
    return {
        name: table[workload_id]
        for name, table in PEERS.items()
        if workload_id in table and importlib.util.find_spec(name) is not None
    }
