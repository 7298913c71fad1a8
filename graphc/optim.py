"""Optimizers: a loss Tensor in, a list of variable updates (``graphc.assign`` results) out.

``gc.compile(loss, updates=opt.minimize(loss))`` is a train step. The formulas are PyTorch's
(``torch.optim.SGD``, ``Adam``, ``AdamW``, ``RMSprop``), including Adam's bias correction, L2 weight
decay added to the gradient (AdamW: decoupled, applied to the weights) and ``clip_norm`` as
``torch.nn.utils.clip_grad_norm_`` (scale every gradient by ``min(1, clip_norm / (norm + 1e-6))``,
``norm`` over all of them, before weight decay). The optimizer's state (step count, moments,
momentum buffers) lives in non-trainable variables named ``<optimizer>/<slot>/<parameter>``
(``adam/m/dense/kernel``), so ``gc.save_checkpoint`` saves it and training resumes exactly.
"""

from __future__ import annotations

import numpy as np

from . import ops
from .autodiff import DIFF, edge_kind, grad
from .errors import GraphError
from .ir import Tensor, Variable

__all__ = ["SGD", "Adam", "AdamW", "Optimizer", "RMSProp", "clip_by_global_norm", "trainable_parameters"]


def trainable_parameters(loss: Tensor) -> list[Variable]:
    """The trainable float variables ``loss`` depends on through differentiable ops, in creation order."""
    seen, stack, found = {loss.node}, [loss.node], []
    while stack:
        node = stack.pop()
        if node.op == "variable" and node.attrs.get("trainable", True) and node.types[0].dtype.kind == "f":
            found.append(node)
        for i, t in enumerate(node.inputs):
            if t.node not in seen and edge_kind(node, i) == DIFF:
                seen.add(t.node)
                stack.append(t.node)
    return [n.outputs[0] for n in sorted(found, key=lambda n: n.id)]


def clip_by_global_norm(grads: list[Tensor], clip_norm: float) -> tuple[list[Tensor], Tensor]:
    """Gradients scaled by ``min(1, clip_norm / (norm + 1e-6))`` (PyTorch's ``clip_grad_norm_``).

    Returns the scaled gradients and the global norm (float64) of the unscaled ones.
    """
    sq = [ops.cast(ops.sum(ops.square(g)), np.float64) for g in grads]
    total = sq[0]
    for s in sq[1:]:
        total = total + s
    norm = ops.sqrt(total)
    coef = ops.minimum(clip_norm / (norm + 1e-6), 1.0)
    return [g * ops.cast(coef, g.dtype) for g in grads], norm


class Optimizer:
    """Base: parameter selection, clipping, the step counter and state variables.

    Subclasses set ``kind`` and define ``_update(p, g, lr, t) -> [(variable, new value), ...]``,
    where ``g`` is the clipped gradient and ``t`` the new step count (float64, 1 at the first step).
    """

    kind = "optimizer"

    def __init__(self, lr, weight_decay: float = 0.0, clip_norm: float | None = None, name: str | None = None):
        if not isinstance(lr, Tensor) and not lr >= 0:
            raise GraphError(f"{type(self).__name__}: lr must be >= 0 or a scalar Tensor: got {lr!r}")
        if not weight_decay >= 0:
            raise GraphError(f"{type(self).__name__}: weight_decay must be >= 0: got {weight_decay!r}")
        if clip_norm is not None and not clip_norm > 0:
            raise GraphError(f"{type(self).__name__}: clip_norm must be > 0 or None: got {clip_norm!r}")
        self.lr, self.weight_decay, self.clip_norm = lr, weight_decay, clip_norm
        self.name = name
        self.graph = None
        self.step: Variable | None = None  # the number of steps taken (int64), after the first minimize
        self.grad_norm: Tensor | None = None  # the global gradient norm, when clip_norm is set
        self._slots: dict[tuple[str, str], Variable] = {}

    def minimize(self, loss: Tensor, params=None) -> list[Tensor]:
        """The updates of one step that lowers ``loss``: pass them to ``gc.compile(..., updates=)``.

        Parameters
        ----------
        loss : Tensor
            A float scalar.
        params : list of variables, optional
            Default: every trainable variable of the graph that ``loss`` depends on.
        """
        if not isinstance(loss, Tensor):
            raise GraphError(f"{self.kind}.minimize: loss must be a graphc Tensor: got {type(loss).__name__}")
        params = trainable_parameters(loss) if params is None else list(params)
        if not params:
            raise GraphError(f"{self.kind}.minimize: loss '{loss.name}' depends on no trainable variable")
        for p in params:
            if not isinstance(p, Tensor) or p.node.op != "variable":
                raise GraphError(f"{self.kind}.minimize: params must be variables: got {p!r}")
        grads = grad(loss, params)
        return self.apply_gradients(list(zip(grads, params)))

    def apply_gradients(self, grads_and_vars) -> list[Tensor]:
        """The updates that apply these ``(gradient, variable)`` pairs (TF's ``apply_gradients``)."""
        pairs = list(grads_and_vars)
        if not pairs:
            raise GraphError(f"{self.kind}.apply_gradients: no (gradient, variable) pairs given")
        graph = pairs[0][1].graph
        if self.graph is None:
            self.graph, self.name = graph, graph.unique_scope(self.name or self.kind)
        elif graph is not self.graph:
            raise GraphError(f"{self.kind} '{self.name}': belongs to graph '{self.graph.name}': got variables "
                             f"of graph '{graph.name}'")  # fmt: skip
        with graph:
            grads = [g for g, _ in pairs]
            if self.clip_norm is not None:
                grads, self.grad_norm = clip_by_global_norm(grads, self.clip_norm)
            if self.step is None:
                self.step = ops.variable(np.int64(0), name=f"{self.name}/step", trainable=False)
            step = self.step + 1
            t = ops.cast(step, np.float64)
            updates = [ops.assign(self.step, step)]
            for g, (_, p) in zip(grads, pairs):
                lr = self.lr if not isinstance(self.lr, Tensor) else ops.cast(self.lr, p.dtype)
                updates += [ops.assign(var, value) for var, value in self._update(p, g, lr, t)]
        return updates

    def slot(self, kind: str, p: Variable) -> Variable:
        """The state variable ``kind`` of parameter ``p`` (zeros at first, created once)."""
        key = (kind, p.node.name)
        if key not in self._slots:
            value = np.zeros(p.shape, p.dtype)
            self._slots[key] = ops.variable(value, name=f"{self.name}/{kind}/{p.node.name}", trainable=False)
        return self._slots[key]

    @property
    def variables(self) -> list[Variable]:
        """The optimizer's state: the step counter and every slot."""
        return ([self.step] if self.step is not None else []) + list(self._slots.values())

    def _with_l2(self, p, g):
        return g + self.weight_decay * p if self.weight_decay else g

    def _update(self, p, g, lr, t) -> list[tuple]:
        """[(variable, new value), ...] for parameter p with gradient g (every optimizer defines it)."""
        raise GraphError(f"{type(self).__name__}: an Optimizer subclass must define _update(self, p, g, lr, t)")


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum, as ``torch.optim.SGD``.

    ``buf = momentum * buf + g`` (``buf = g`` at the first step); ``p -= lr * buf``, or with
    Nesterov ``p -= lr * (g + momentum * buf)``; ``g`` includes ``weight_decay * p``.
    """

    kind = "sgd"

    def __init__(self, lr, momentum: float = 0.0, nesterov: bool = False, weight_decay: float = 0.0,
                 clip_norm: float | None = None, name: str | None = None):  # fmt: skip
        super().__init__(lr, weight_decay, clip_norm, name)
        if nesterov and not momentum > 0:
            raise GraphError("SGD: nesterov needs momentum > 0")
        self.momentum, self.nesterov = momentum, nesterov

    def _update(self, p, g, lr, t):
        g = self._with_l2(p, g)
        if not self.momentum:
            return [(p, p - lr * g)]
        buf = self.slot("momentum", p)
        new_buf = self.momentum * buf + g  # zero-initialized, so the first step gives buf = g
        step = g + self.momentum * new_buf if self.nesterov else new_buf
        return [(buf, new_buf), (p, p - lr * step)]


def _adam_step(opt, p, g, lr, t) -> tuple[list, Tensor]:
    """Adam's moment updates and its step ``lr * m_hat / (sqrt(v_hat) + eps)``, grouped as PyTorch does."""
    m, v = opt.slot("m", p), opt.slot("v", p)
    new_m = opt.beta1 * m + (1 - opt.beta1) * g
    new_v = opt.beta2 * v + (1 - opt.beta2) * ops.square(g)
    step_size = ops.cast(1.0 / (1.0 - opt.beta1**t), p.dtype) * lr  # bias corrections in float64
    bc2_sqrt = ops.cast(ops.sqrt(1.0 - opt.beta2**t), p.dtype)
    return [(m, new_m), (v, new_v)], step_size * new_m / (ops.sqrt(new_v) / bc2_sqrt + opt.eps)


class Adam(Optimizer):
    """Adam with bias correction, as ``torch.optim.Adam``; ``weight_decay`` is L2 added to the gradient.

    ``m = b1 m + (1 - b1) g``; ``v = b2 v + (1 - b2) g^2``;
    ``p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)``.
    """

    kind = "adam"

    def __init__(self, lr=1e-3, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
                 weight_decay: float = 0.0, clip_norm: float | None = None, name: str | None = None):  # fmt: skip
        super().__init__(lr, weight_decay, clip_norm, name)
        self.beta1, self.beta2, self.eps = beta1, beta2, eps

    def _update(self, p, g, lr, t):
        moments, step = _adam_step(self, p, self._with_l2(p, g), lr, t)
        return [*moments, (p, p - step)]


class AdamW(Optimizer):
    """Adam with decoupled weight decay, as ``torch.optim.AdamW``: ``p *= 1 - lr * weight_decay`` first.

    The default ``weight_decay`` is PyTorch's, 0.01.
    """

    kind = "adamw"

    def __init__(self, lr=1e-3, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
                 weight_decay: float = 1e-2, clip_norm: float | None = None, name: str | None = None):  # fmt: skip
        super().__init__(lr, weight_decay, clip_norm, name)
        self.beta1, self.beta2, self.eps = beta1, beta2, eps

    def _update(self, p, g, lr, t):
        moments, step = _adam_step(self, p, g, lr, t)
        decayed = p * (1 - lr * self.weight_decay) if self.weight_decay else p
        return [*moments, (p, decayed - step)]


class RMSProp(Optimizer):
    """RMSProp as ``torch.optim.RMSprop`` (``rho`` is PyTorch's ``alpha``).

    ``v = rho v + (1 - rho) g^2``; ``avg = sqrt(v) + eps`` (centered: ``sqrt(v - mean_g^2) + eps``);
    ``p -= lr * g / avg``, or with momentum ``buf = momentum * buf + g / avg; p -= lr * buf``.
    """

    kind = "rmsprop"

    def __init__(self, lr=1e-2, rho: float = 0.99, eps: float = 1e-8, momentum: float = 0.0,
                 centered: bool = False, weight_decay: float = 0.0, clip_norm: float | None = None,
                 name: str | None = None):  # fmt: skip
        super().__init__(lr, weight_decay, clip_norm, name)
        self.rho, self.eps, self.momentum, self.centered = rho, eps, momentum, centered

    def _update(self, p, g, lr, t):
        g = self._with_l2(p, g)
        v = self.slot("v", p)
        new_v = self.rho * v + (1 - self.rho) * ops.square(g)
        updates = [(v, new_v)]
        if self.centered:
            mg = self.slot("mean_grad", p)
            new_mg = self.rho * mg + (1 - self.rho) * g
            updates.append((mg, new_mg))
            avg = ops.sqrt(new_v - ops.square(new_mg)) + self.eps
        else:
            avg = ops.sqrt(new_v) + self.eps
        if not self.momentum:
            return [*updates, (p, p - lr * (g / avg))]
        buf = self.slot("momentum", p)
        new_buf = self.momentum * buf + g / avg
        return [*updates, (buf, new_buf), (p, p - lr * new_buf)]
