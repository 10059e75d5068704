"""Optimisers that update a list of NumPy parameters in place.

Weight decay here is L2 regularisation: ``weight_decay * W`` is added to the gradient of each
parameter flagged in ``decay`` (the weight matrices; biases are not decayed), which is the
gradient of ``(weight_decay / 2) * ||W||^2`` added to the loss.
"""

from __future__ import annotations

import numpy as np


class Optimizer:
    """Base class: holds the parameters and which of them get weight decay.

    Args:
        params: arrays updated in place by :meth:`step`.
        lr: learning rate (> 0).
        weight_decay: L2 coefficient (>= 0) applied to ``params[i]`` where ``decay[i]``.
        decay: one flag per parameter; defaults to all True.
    """

    def __init__(self, params: list[np.ndarray], lr: float, weight_decay: float = 0.0,
                 decay: list[bool] | None = None):
        self.params = params
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)
        self.decay = list(decay) if decay is not None else [True] * len(params)
        self.t = 0  # steps taken

    def _with_decay(self, i: int, g: np.ndarray) -> np.ndarray:
        if self.weight_decay and self.decay[i]:
            g = g + self.weight_decay * self.params[i]
        return g

    def step(self, grads: list[np.ndarray]) -> None:
        """Update every parameter in place from its gradient (same shapes and order)."""
        self.t += 1
        for i, (p, g) in enumerate(zip(self.params, grads)):
            self._update(i, p, self._with_decay(i, g))

    def _update(self, i: int, p: np.ndarray, g: np.ndarray) -> None:
        raise NotImplementedError


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum.

    With momentum ``mu``: ``v <- mu v + g``; the step is ``p <- p - lr v``, or with Nesterov
    ``p <- p - lr (g + mu v)`` (Sutskever et al. 2013, "On the importance of initialization
    and momentum in deep learning", in the formulation PyTorch's ``torch.optim.SGD`` uses).
    ``momentum=0`` is plain SGD.
    """

    def __init__(self, params, lr, momentum: float = 0.0, nesterov: bool = False, **kw):
        super().__init__(params, lr, **kw)
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov) and self.momentum > 0
        self.velocity = [np.zeros_like(p) for p in params] if self.momentum else None

    def _update(self, i, p, g):
        if self.velocity is None:
            p -= self.lr * g
            return
        v = self.velocity[i]
        v *= self.momentum
        v += g
        if self.nesterov:
            p -= self.lr * (g + self.momentum * v)
        else:
            p -= self.lr * v


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015, "Adam: a method for stochastic optimization", Algorithm 1).

    ``m <- b1 m + (1 - b1) g``, ``v <- b2 v + (1 - b2) g^2``, and
    ``p <- p - lr * m_hat / (sqrt(v_hat) + eps)`` with the bias-corrected
    ``m_hat = m / (1 - b1^t)``, ``v_hat = v / (1 - b2^t)``. Defaults are the paper's.
    """

    def __init__(self, params, lr=1e-3, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8, **kw):
        super().__init__(params, lr, **kw)
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]

    def _update(self, i, p, g):
        m, v = self.m[i], self.v[i]
        m *= self.beta1
        m += (1 - self.beta1) * g
        v *= self.beta2
        v += (1 - self.beta2) * (g * g)
        m_hat_scale = 1.0 / (1 - self.beta1 ** self.t)
        v_hat_scale = 1.0 / (1 - self.beta2 ** self.t)
        denom = np.sqrt(v * v_hat_scale)
        denom += self.eps
        p -= (self.lr * m_hat_scale) * m / denom


def make_optimizer(name: str, params: list[np.ndarray], decay: list[bool], **settings) -> Optimizer:
    """Build the optimiser named in the config (``sgd`` or ``adam``) over ``params``.

    ``settings`` are the config's optimizer keys (lr, momentum, nesterov, weight_decay,
    beta1, beta2, eps); keys the chosen optimiser does not use are ignored.

    Raises:
        ValueError: unknown optimiser name.
    """
    common = {"lr": settings["lr"], "weight_decay": settings.get("weight_decay", 0.0), "decay": decay}
    if name == "sgd":
        return SGD(params, momentum=settings.get("momentum", 0.0),
                   nesterov=settings.get("nesterov", False), **common)
    if name == "adam":
        return Adam(params, beta1=settings.get("beta1", 0.9), beta2=settings.get("beta2", 0.999),
                    eps=settings.get("eps", 1e-8), **common)
    raise ValueError(f"unknown optimizer {name!r}")
