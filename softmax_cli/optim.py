"""Optimisers that update a list of NumPy parameters in place.

Weight decay for SGD and Adam is L2 regularisation: ``weight_decay * W`` is added to the
gradient of each parameter flagged in ``decay`` (the weight matrices; biases are not
decayed), which is the gradient of ``(weight_decay / 2) * ||W||^2`` added to the loss. AdamW
decouples it instead: the weights shrink by ``lr * weight_decay * W`` outside the adaptive
step (Loshchilov & Hutter 2019), so the decay is not divided by ``sqrt(v_hat)``.

Each update rule is one loop over the parameter's entries, compiled by numba: the decay, the
moment updates and the step happen in a single pass over memory, where NumPy would make ten
passes and allocate temporaries (the Adam update of a 784-256-10 network took 0.3 s of an
MNIST epoch in NumPy, this loop 0.06 s). The loops are the formulas of the papers cited,
written once; there is no second NumPy copy. Coefficients are passed in the parameter's dtype so that
float32 parameters are updated in float32 arithmetic.
"""

from __future__ import annotations

import numpy as np
from .cache import configure_numba

configure_numba()   # compiled kernels are cached in the user cache directory, never in the package
from numba import njit  # noqa: E402


@njit(cache=True, nogil=True, error_model="numpy")
def _sgd_kernel(p, g, velocity, lr, momentum, nesterov, weight_decay):  # pragma: no cover (compiled)
    """SGD of ``docs/math.md``, in place, entry by entry, with learning rate ``η`` = ``lr``,
    momentum ``μ`` and L2 weight decay ``λ`` = ``weight_decay``: ``g ← g + λ W``; with
    ``μ > 0``, ``v ← μ v + g`` and ``W ← W - η v`` (Nesterov: ``W ← W - η (g + μ v)``);
    with ``μ = 0``, ``W ← W - η g``. ``p`` is ``W`` (or ``b``), flat."""
    for i in range(p.size):
        gi = g[i] + weight_decay * p[i]
        if momentum != 0:
            velocity[i] = momentum * velocity[i] + gi
            gi = gi + momentum * velocity[i] if nesterov else velocity[i]
        p[i] -= lr * gi


@njit(cache=True, nogil=True, error_model="numpy")
def _adam_kernel(p, g, m, v, beta1, one_minus_beta1, beta2, one_minus_beta2,
                 lr_m_hat, v_hat_scale, eps, weight_decay, shrink, tiny, g_floor):  # pragma: no cover (compiled)
    """Adam of ``docs/math.md`` (Algorithm 1 of Kingma & Ba 2015), in place, entry by entry,
    at step ``t``: ``g ← g + λ W`` (L2 decay ``λ`` = ``weight_decay``),
    ``m ← β1 m + (1 - β1) g``, ``v ← β2 v + (1 - β2) g²``,
    ``W ← shrink W - η m̂ / (√v̂ + eps)`` with ``m̂ = m / (1 - β1ᵗ)`` (``lr_m_hat`` is
    ``η / (1 - β1ᵗ)``) and ``v̂ = v / (1 - β2ᵗ)`` (``v_hat_scale`` is ``1 / (1 - β2ᵗ)``). Adam
    passes ``shrink = 1``; AdamW (Loshchilov & Hutter 2019) passes ``λ = 0`` here and
    ``shrink = 1 - η λ``. ``p`` is ``W`` (or ``b``), flat. Subnormal values are flushed to 0
    as the comments below say."""
    # weight_decay: L2 (into the gradient); shrink: AdamW's decoupled factor 1 - lr * decay.
    # Subnormal numbers (below tiny) make arithmetic 10-100 x slower on x86, and backprop
    # gives a few percent of gradients that are subnormal, or so small (below g_floor) that
    # the term (1 - beta2) g^2 is: the first are taken as 0, the second add 0 to the second
    # moment (such a term changes v only where sqrt(v) is far below eps, and so no weight);
    # moments that decay below tiny are stored as 0. Normal numbers get the same arithmetic,
    # in the same order, as the formula.
    zero = p.dtype.type(0)                         # a bare 0 would turn the arithmetic float64
    for i in range(p.size):
        gi = g[i]
        gi = (gi if abs(gi) >= tiny else zero) + weight_decay * p[i]
        g_sq = gi if abs(gi) >= g_floor else zero
        mi = beta1 * m[i] + one_minus_beta1 * gi
        vi = beta2 * v[i] + one_minus_beta2 * g_sq * g_sq
        m[i] = mi if abs(mi) >= tiny else 0
        v[i] = vi if vi >= tiny else 0
        p[i] = shrink * p[i] - lr_m_hat * mi / (np.sqrt(vi * v_hat_scale) + eps)


def restore_arrays(own: dict[str, np.ndarray], arrays: dict[str, np.ndarray], what: str) -> None:
    """Copy ``arrays[key]`` into each array of ``own`` in place (a resumed run's training
    state: optimiser moments, the weight average); each must have the same shape and dtype.

    Raises:
        ValueError: ``"<what> '<key>' missing or not <dtype> of shape <shape>"``.
    """
    for key, target in own.items():
        given = arrays.get(key)
        if given is None or given.shape != target.shape or given.dtype != target.dtype:
            raise ValueError(f"{what} {key!r} missing or not {target.dtype} of shape {target.shape}")
        target[...] = given


class Optimizer:
    """Base class: holds the parameters and which of them get weight decay.

    Args:
        params: C-contiguous float arrays updated in place by :meth:`step`.
        lr: learning rate (> 0).
        weight_decay: L2 coefficient (>= 0) applied to ``params[i]`` where ``decay[i]``.
        decay: one flag per parameter; defaults to all True.

    Raises:
        ValueError: a parameter is not a C-contiguous float32 or float64 array.
    """

    def __init__(self, params: list[np.ndarray], lr: float, weight_decay: float = 0.0,
                 decay: list[bool] | None = None):
        for p in params:
            if not (isinstance(p, np.ndarray) and p.flags.c_contiguous and p.dtype in (np.float32, np.float64)):
                raise ValueError("parameters must be C-contiguous float32 or float64 arrays")
        self.params = params
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)
        self.decay = list(decay) if decay is not None else [True] * len(params)
        self.t = 0  # steps taken
        self._flat = [p.reshape(-1) for p in params]   # views: the kernels loop over one axis

    state_names: tuple[str, ...] = ()   # attributes holding one state array per parameter

    def _state(self) -> list[np.ndarray]:
        """A zeroed array per parameter (moment estimates, velocities)."""
        return [np.zeros(p.size, dtype=p.dtype) for p in self.params]

    def state_arrays(self) -> dict[str, np.ndarray]:
        """The optimiser's state as named arrays (``m0``, ``v0``, ... or ``velocity0``, ...),
        which with :attr:`t` is everything a resumed run needs to continue exactly."""
        return {f"{name}{i}": a for name in self.state_names for i, a in enumerate(getattr(self, name))}

    def load_state(self, t: int, arrays: dict[str, np.ndarray]) -> None:
        """Restore :attr:`t` and the arrays of :meth:`state_arrays` (copied in place).

        Raises:
            ValueError: an array is missing or has the wrong size or dtype.
        """
        restore_arrays(self.state_arrays(), arrays, "optimizer state")
        self.t = int(t)

    def step(self, grads: list[np.ndarray]) -> None:
        """Update every parameter in place from its gradient (same shapes, order and dtype)."""
        self.t += 1
        coefficients = self._coefficients()
        for i, (p, g) in enumerate(zip(self._flat, grads)):
            if g.dtype != p.dtype or not g.flags.c_contiguous:
                g = np.ascontiguousarray(g, dtype=p.dtype)
            self._update(i, p, g.reshape(-1), coefficients[p.dtype], self.weight_decay * self.decay[i])

    def _coefficients(self) -> dict:
        """The step's scalars, once per dtype of the parameters (see :meth:`_update`)."""
        return {}

    def _update(self, i: int, p: np.ndarray, g: np.ndarray, coefficients: tuple,
                weight_decay: float) -> None:
        """Apply the rule to the flat views ``p`` and ``g``. ``coefficients`` are the rule's
        scalars in the parameter's dtype, so float32 parameters get float32 arithmetic."""
        raise NotImplementedError


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum.

    With momentum ``mu``: ``v <- mu v + g``; the step is ``p <- p - lr v``, or with Nesterov
    ``p <- p - lr (g + mu v)`` (Sutskever et al. 2013, "On the importance of initialization
    and momentum in deep learning", in the formulation PyTorch's ``torch.optim.SGD`` uses).
    ``momentum=0`` is plain SGD, ``p <- p - lr g``.
    """

    def __init__(self, params, lr, momentum: float = 0.0, nesterov: bool = False, **kw):
        super().__init__(params, lr, **kw)
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov) and self.momentum > 0
        self.velocity = self._state()

    state_names = ("velocity",)

    def _coefficients(self):
        return {dt: (dt.type(self.lr), dt.type(self.momentum)) for dt in {p.dtype for p in self.params}}

    def _update(self, i, p, g, coefficients, weight_decay):
        lr, momentum = coefficients
        _sgd_kernel(p, g, self.velocity[i], lr, momentum, self.nesterov, p.dtype.type(weight_decay))


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015, "Adam: a method for stochastic optimization", Algorithm 1).

    ``m <- b1 m + (1 - b1) g``, ``v <- b2 v + (1 - b2) g^2``, and
    ``p <- p - lr * m_hat / (sqrt(v_hat) + eps)`` with the bias-corrected
    ``m_hat = m / (1 - b1^t)``, ``v_hat = v / (1 - b2^t)``. Defaults are the paper's.
    """

    decoupled = False   # AdamW: True

    def __init__(self, params, lr=1e-3, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8, **kw):
        super().__init__(params, lr, **kw)
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)
        self.m, self.v = self._state(), self._state()
        # the kernel's fixed scalars in each dtype of the parameters; tiny and g_floor: see it
        self._constants = {dt: tuple(dt.type(c) for c in (
            self.beta1, 1 - self.beta1, self.beta2, 1 - self.beta2, self.eps, np.finfo(dt).tiny,
            np.sqrt(np.finfo(dt).tiny / max(1 - self.beta2, 1e-30))))
            for dt in {p.dtype for p in self.params}}

    state_names = ("m", "v")

    def _coefficients(self):
        # per dtype: the constants (converted once), then the step's bias-corrected scales
        lr_m_hat, v_hat_scale = self.lr / (1 - self.beta1 ** self.t), 1 / (1 - self.beta2 ** self.t)
        return {dt: (constants, dt.type(lr_m_hat), dt.type(v_hat_scale))
                for dt, constants in self._constants.items()}

    def _update(self, i, p, g, coefficients, weight_decay):
        (b1, one_minus_b1, b2, one_minus_b2, eps, tiny, g_floor), lr_m_hat, v_hat_scale = coefficients
        dt = p.dtype.type
        l2, shrink = (0.0, 1.0 - self.lr * weight_decay) if self.decoupled else (weight_decay, 1.0)
        _adam_kernel(p, g, self.m[i], self.v[i], b1, one_minus_b1, b2, one_minus_b2,
                     lr_m_hat, v_hat_scale, eps, dt(l2), dt(shrink), tiny, g_floor)


class AdamW(Adam):
    """AdamW (Loshchilov & Hutter 2019, "Decoupled weight decay regularization", Algorithm
    2): Adam on the loss gradient alone, and the decayed weights shrink outside it,
    ``p <- (1 - lr * weight_decay) p - lr * m_hat / (sqrt(v_hat) + eps)``.

    The decay is multiplied by the current learning rate, as in PyTorch's ``AdamW`` (the
    paper's schedule multiplier ``eta_t`` times its ``lambda`` is our ``lr * weight_decay``),
    so a schedule lowers both together. Unlike Adam with L2, a weight whose loss gradient
    is 0 decays geometrically instead of moving by about ``lr`` per step.
    """

    decoupled = True


def make_optimizer(name: str, params: list[np.ndarray], decay: list[bool], **settings) -> Optimizer:
    """Build the optimiser named in the config (``sgd``, ``adam`` or ``adamw``) over ``params``.

    ``settings`` are the config's optimizer keys (lr, momentum, nesterov, weight_decay,
    beta1, beta2, eps); keys the chosen optimiser does not use are ignored.

    Raises:
        ValueError: unknown optimiser name.
    """
    common = {"lr": settings["lr"], "weight_decay": settings.get("weight_decay", 0.0), "decay": decay}
    if name == "sgd":
        return SGD(params, momentum=settings.get("momentum", 0.0),
                   nesterov=settings.get("nesterov", False), **common)
    if name in ("adam", "adamw"):
        return (Adam if name == "adam" else AdamW)(
            params, beta1=settings.get("beta1", 0.9), beta2=settings.get("beta2", 0.999),
                    eps=settings.get("eps", 1e-8), **common)
    raise ValueError(f"unknown optimizer {name!r}")
