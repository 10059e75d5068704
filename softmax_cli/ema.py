"""An exponential moving average of the weights, evaluated in their place (``train.ema``).

Polyak averaging (Polyak & Juditsky 1992, "Acceleration of stochastic approximation by
averaging") evaluates the average of the iterates of stochastic gradient descent rather
than the last one: the average sits nearer the minimum than the noisy iterates around it.
Its exponential form weighs recent steps more, so that the weights of the early epochs
are forgotten; with decay ``β`` (the convention of TensorFlow's
``tf.train.ExponentialMovingAverage``, ``decay``) after each optimiser step ``t``::

    θ̄_t = β θ̄_{t-1} + (1 - β) θ_t,        θ̄_0 = θ_0 (the initial weights)

so ``θ̄_t = β^t θ_0 + (1 - β) Σ_{s=1..t} β^(t-s) θ_s``: the average spans about
``1 / (1 - β)`` steps (1,000 for ``β = 0.999``). Training itself is unchanged (the
gradients are taken at ``θ_t``); validation, the choice of the best epoch, ``best.npz``
and the test metrics use ``θ̄``, and ``last.npz`` keeps both, so a resumed run continues
the average exactly.
"""

from __future__ import annotations

import numpy as np


class WeightAverage:
    """The exponential moving average ``θ̄`` of a list of parameters.

    Args:
        params: the model's parameters (float32 or float64 arrays); the average starts as
            a copy of them (``θ̄_0 = θ_0``) and has their shapes and dtypes.
        decay: ``β`` in (0, 1): the weight of the previous average at each step.

    Raises:
        ValueError: ``decay`` is not in (0, 1).
    """

    def __init__(self, params: list[np.ndarray], decay: float):
        if not 0 < decay < 1:
            raise ValueError(f"decay must be in (0, 1), got {decay}")
        self.decay = float(decay)
        self.averaged = [p.copy() for p in params]
        self._scratch = [np.empty_like(p) for p in params]

    def update(self, params: list[np.ndarray]) -> None:
        """One step: ``θ̄ ← β θ̄ + (1 - β) θ`` for each parameter (in place, in its dtype)."""
        for avg, p, tmp in zip(self.averaged, params, self._scratch):
            np.multiply(p, 1.0 - self.decay, out=tmp, casting="same_kind")
            avg *= self.decay
            avg += tmp

    def state_arrays(self) -> dict[str, np.ndarray]:
        """The average as named arrays (``ema0``, ``ema1``, ...; the layout of the parameters,
        flattened), saved with the optimiser's state in ``last.npz``."""
        return {f"ema{i}": a.reshape(-1) for i, a in enumerate(self.averaged)}

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        """Restore the average from the arrays of :meth:`state_arrays` (copied in place).

        Raises:
            ValueError: an array is missing or has the wrong size or dtype.
        """
        from .optim import restore_arrays

        restore_arrays(self.state_arrays(), arrays, "weight average")
