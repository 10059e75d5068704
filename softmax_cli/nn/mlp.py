"""A multilayer perceptron with a softmax output layer, trained by backpropagation.

Layer ``l`` computes ``Z_l = A_{l-1} W_l + b_l`` (row layout: ``A_{l-1}`` is ``(m, n_in)``,
``W_l`` is ``(n_in, n_out)``, ``b_l`` is ``(n_out,)``), then ``A_l = f(Z_l)`` for hidden layers
and ``softmax(Z_L)`` for the output. The backward pass is the one of ``docs/math.md``:
the fused output delta ``(A - Y) / m``, then ``delta_l = (delta_{l+1} W_{l+1}^T) * f'(Z_l)``.
"""

from __future__ import annotations

import numpy as np

from .functional import ACTIVATION_GRADS, ACTIVATIONS, softmax, softmax_cross_entropy_step


def init_weights(n_in: int, n_out: int, activation: str | None, rng: np.random.Generator,
                 dtype) -> np.ndarray:
    """Initial weights ``(n_in, n_out)`` for a layer followed by ``activation``.

    ReLU and leaky ReLU layers get He normal init, ``N(0, 2 / n_in)`` (He et al. 2015,
    "Delving deep into rectifiers"); tanh, sigmoid and the softmax output layer
    (``activation=None``) get Glorot uniform, ``U(+-sqrt(6 / (n_in + n_out)))`` (Glorot &
    Bengio 2010, "Understanding the difficulty of training deep feedforward networks").
    """
    if activation in ("relu", "leaky_relu"):
        W = rng.normal(0.0, np.sqrt(2.0 / n_in), size=(n_in, n_out))
    else:
        limit = np.sqrt(6.0 / (n_in + n_out))
        W = rng.uniform(-limit, limit, size=(n_in, n_out))
    return W.astype(dtype)


class MLP:
    """A fully connected network: ``sizes[0]`` inputs, hidden layers, ``sizes[-1]`` classes.

    Args:
        sizes: layer widths, e.g. ``[784, 128, 10]``; ``[64, 10]`` is softmax regression.
        activation: hidden-layer activation, a key of :data:`ACTIVATIONS`.
        dtype: float dtype of parameters and computations (float32 or float64).
        rng: generator for the initial weights; required unless ``params`` is given.
        params: existing parameters ``[W0, b0, W1, b1, ...]`` to use instead of initialising.

    Raises:
        ValueError: fewer than two sizes, an unknown activation, a dtype that is not float32
            or float64, neither ``rng`` nor ``params``, or ``params`` whose shapes do not
            match ``sizes``.
        MemoryError: a weight matrix too large to allocate (NumPy's own refusal of a size
            beyond its index range is a ValueError; it is reported as this one).
    """

    def __init__(self, sizes: list[int], activation: str = "relu", dtype=np.float32,
                 rng: np.random.Generator | None = None, params: list[np.ndarray] | None = None):
        if len(sizes) < 2 or min(sizes) < 1:
            raise ValueError(f"need at least an input and an output size, got {sizes}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; known: {', '.join(ACTIVATIONS)}")
        self.sizes = [int(s) for s in sizes]
        self.activation = activation
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype}")
        if params is None:
            if rng is None:
                raise ValueError("give rng (for new weights) or params (existing ones)")
            params = []
            for n_in, n_out in zip(self.sizes[:-1], self.sizes[1:]):
                if n_in * n_out * 8 > np.iinfo(np.intp).max:   # 8: init draws float64
                    raise MemoryError(f"a {n_in} x {n_out} weight matrix is beyond NumPy's array size")
            for i, (n_in, n_out) in enumerate(zip(self.sizes[:-1], self.sizes[1:])):
                hidden = i < len(self.sizes) - 2
                params += [init_weights(n_in, n_out, activation if hidden else None, rng, self.dtype),
                           np.zeros(n_out, dtype=self.dtype)]
        expected = [s for n_in, n_out in zip(self.sizes[:-1], self.sizes[1:]) for s in ((n_in, n_out), (n_out,))]
        if [p.shape for p in params] != expected:
            raise ValueError(f"parameter shapes {[p.shape for p in params]} do not match sizes {self.sizes}")
        self.params = [np.ascontiguousarray(p, dtype=self.dtype) for p in params]

    @property
    def n_layers(self) -> int:
        """Number of weight layers (hidden layers + 1)."""
        return len(self.sizes) - 1

    @property
    def weights(self) -> list[np.ndarray]:
        """Weight matrices ``W_l`` of shape ``(sizes[l], sizes[l + 1])`` (views into params)."""
        return self.params[0::2]

    @property
    def biases(self) -> list[np.ndarray]:
        """Bias vectors ``b_l`` of shape ``(sizes[l + 1],)`` (views into params)."""
        return self.params[1::2]

    # ------------------------------------------------------------------------ forward
    def workspace(self, batch_size: int, training: bool = True,
                  dropout: list[float] | None = None) -> "Workspace":
        """Buffers for passes over up to ``batch_size`` rows (see :class:`Workspace`)."""
        return Workspace(self.sizes, batch_size, self.dtype, training, dropout)

    def forward(self, X: np.ndarray, ws: "Workspace", dropout: list[float] | None = None,
                rng: np.random.Generator | None = None) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Forward pass into the leading ``len(X)`` rows of the workspace's buffers.

        Returns ``(acts, inputs)``: ``acts = [X, A_1, ..., A_{L-1}, Z_L]``, the activations of
        every layer with the logits last, and ``inputs[l]``, what weight layer ``l`` received:
        ``acts[l]``, or with inverted dropout (Srivastava et al. 2014, scaled at training time
        so that nothing changes at test time) ``acts[l] * mask_l`` with ``mask_l`` 0 with
        probability ``dropout[l]`` and ``1 / (1 - dropout[l])`` otherwise, drawn from ``rng``.
        """
        m = len(X)
        acts, inputs = [X], []
        last = self.n_layers - 1
        for l, (W, b) in enumerate(zip(self.weights, self.biases)):
            inp = acts[-1]
            rate = dropout[l] if dropout is not None else 0.0
            if rate > 0:
                from .kernels import dropout_mask   # numba: training only

                mask = ws.mask[l][:m]
                rng.random(out=mask, dtype=mask.dtype)
                dropout_mask(mask, mask.dtype.type(rate), mask.dtype.type(1 / (1 - rate)))
                inp = np.multiply(inp, mask, out=ws.dropped[l][:m])
            inputs.append(inp)
            Z = np.matmul(inp, W, out=ws.Z[l][:m])
            Z += b
            if l < last:
                ACTIVATIONS[self.activation](Z, ws.scratch[l][:m])
            acts.append(Z)
        return acts, inputs

    def logits(self, X: np.ndarray, batch_size: int = 8192) -> np.ndarray:
        """Logits ``(m, K)`` of the model's dtype for inputs ``X`` (m, n_features).

        Runs in batches of ``batch_size`` rows through one reused :class:`Workspace`, so
        evaluating a large split needs memory for one batch, not for the whole split.

        Raises:
            ValueError: ``X`` is not 2-D with the model's number of features.
        """
        X = np.asarray(X, dtype=self.dtype)
        if X.ndim != 2 or X.shape[1] != self.sizes[0]:
            raise ValueError(f"expected inputs of shape (m, {self.sizes[0]}), got {X.shape}")
        out = np.empty((len(X), self.sizes[-1]), dtype=self.dtype)
        ws = self.workspace(max(1, min(len(X), batch_size)), training=False)
        for lo in range(0, len(X), batch_size):
            out[lo:lo + batch_size] = self.forward(X[lo:lo + batch_size], ws)[0][-1]
        return out

    def predict_proba(self, X: np.ndarray, batch_size: int = 8192) -> np.ndarray:
        """Class probabilities ``softmax(logits)``, shape (m, K), rows summing to 1."""
        return softmax(self.logits(X, batch_size))

    # ----------------------------------------------------------------------- backward
    def loss_and_grads(self, X: np.ndarray, y: np.ndarray, workspace: "Workspace | None" = None, *,
                       label_smoothing: float = 0.0, dropout: list[float] | None = None,
                       rng: np.random.Generator | None = None) -> tuple[float, list[np.ndarray], int]:
        """Mean cross-entropy on a batch, its gradient for every parameter, and the hits.

        Backpropagation as in the math note: fused output delta ``(A - Y) / m``,
        ``dJ/dW_l = A_{l-1}^T delta_l``, ``dJ/db_l = sum_rows delta_l``,
        ``delta_{l-1} = (delta_l W_l^T) * f'(Z_{l-1})``. With dropout, ``A_{l-1}`` is the
        masked input the layer received and ``delta_l W_l^T`` is multiplied by the same
        mask before ``f'``. No gradient is computed with respect to the inputs ``X``.

        Args:
            X: inputs (m, n_features) of the model's dtype, C-contiguous.
            y: integer labels (m,) or target distributions (m, K).
            workspace: buffers for at least ``m`` rows, reused from call to call (the
                training loop's way to allocate nothing per batch); a new one when None.
            label_smoothing: for integer labels, train against ``(1 - eps) one_hot + eps / K``
                (see :func:`~softmax_cli.nn.functional.softmax_cross_entropy`).
            dropout: per weight layer, the rate at which its inputs are dropped (index 0:
                the input features, then each hidden layer's outputs); None or zeros: none.
            rng: draws the dropout masks (required when a rate is above 0).

        Returns:
            ``(J, grads, n_correct)``: the mean loss (nats), ``[dJ/dW0, dJ/db0, ...]``
            matching :attr:`params`, and how many rows the batch's logits classify right
            (against ``y``, or the argmax of each target distribution). ``grads`` are the
            workspace's arrays: the next call with the same workspace overwrites them.

        Raises:
            ValueError: the workspace is smaller than the batch, built for other sizes or
                without buffers for the dropout asked for; ``dropout`` without ``rng``.
        """
        m = len(X)
        dropout = dropout if dropout is not None and any(dropout) else None
        ws = workspace if workspace is not None else self.workspace(m, dropout=dropout)
        if ws.batch_size < m or ws.sizes != self.sizes or ws.grads is None:
            raise ValueError(f"workspace for {ws.batch_size} rows of {ws.sizes} (training="
                             f"{ws.grads is not None}) cannot hold a batch of {m} rows of {self.sizes}")
        if dropout is not None and (rng is None or len(dropout) != self.n_layers
                                    or any(r > 0 and ws.mask[l] is None for l, r in enumerate(dropout))):
            raise ValueError(f"dropout {dropout} needs an rng, one rate per weight layer "
                             f"({self.n_layers}) and a workspace made with those rates")
        acts, inputs = self.forward(X, ws, dropout, rng)
        # the logits acts[-1] become delta = (A - Y) / m, and the output bias gets its gradient
        loss, n_correct = softmax_cross_entropy_step(acts[-1], y, label_smoothing, ws.grads[-1])
        return loss, self.backward(acts, inputs, ws), n_correct

    def backward(self, acts: list[np.ndarray], inputs: list[np.ndarray], ws: "Workspace") -> list[np.ndarray]:
        """Backpropagation from the output delta to every parameter's gradient.

        ``acts`` and ``inputs`` are what :meth:`forward` returned for a batch of ``m`` rows,
        except that ``acts[-1]`` already holds the output delta ``Δ_L = ∂J/∂Z_L = (A - Y) / m``
        and ``ws.grads[-1]`` its column sums ``∂J/∂b_L``
        (:func:`~softmax_cli.nn.functional.softmax_cross_entropy_step` writes both). Then, for
        ``l = L, ..., 1`` (``docs/math.md``, "The backward pass through hidden layers"):
        ``∂J/∂W_l = A_{l-1}ᵀ Δ_l`` and, above the first layer, ``Δ_{l-1} = (Δ_l W_lᵀ) ⊙
        f'(Z_{l-1})`` (times the dropout mask of layer ``l``'s input, when it had one) with
        ``∂J/∂b_{l-1}`` its column sums.

        Returns:
            ``[dJ/dW0, dJ/db0, ...]`` matching :attr:`params`: the workspace's arrays.
        """
        m = len(acts[0])
        grads, delta = ws.grads, acts[-1]
        grad_fn = ACTIVATION_GRADS[self.activation]
        for l in range(self.n_layers - 1, -1, -1):
            np.matmul(inputs[l].T, delta, out=grads[2 * l])
            if l > 0:
                back = np.matmul(delta, self.weights[l].T, out=ws.delta[l - 1][:m])
                if inputs[l] is not acts[l]:
                    back *= ws.mask[l][:m]          # through the dropout of layer l's input
                # delta_{l-1}, and with it dJ/db_{l-1}, its column sums
                delta = grad_fn(acts[l], back, grads[2 * l - 1])
        return grads

    def apply_max_norm(self, max_norm: float) -> None:
        """Rescale, in place, each unit's incoming weights (a column ``W_l[:, j]``) whose L2
        norm exceeds ``max_norm`` down to that norm, in every layer (the max-norm constraint
        of Srivastava et al. 2014, "Dropout", section 5.1; applied after each update)."""
        for W in self.weights:
            norms = np.sqrt(np.einsum("ij,ij->j", W, W))
            if norms.max() > max_norm:
                W *= np.minimum(1, max_norm / np.maximum(norms, np.finfo(W.dtype).tiny)).astype(W.dtype)


class Workspace:
    """Preallocated buffers for forward and backward passes of up to ``batch_size`` rows.

    A training run makes one and passes it to every :meth:`MLP.loss_and_grads` call, so the
    hot loop allocates nothing of size (batch, width) or (width, width); a smaller batch (the
    last of an epoch) uses the leading rows of each buffer, which are C-contiguous views.

    Attributes (all of dtype ``dtype``):
        X: (batch_size, sizes[0]) input rows for the caller to fill, e.g. with
            ``np.take(data, rows, axis=0, out=ws.X[:m])``; ``y``: (batch_size,) int64 labels.
        Z: per layer l, (batch_size, sizes[l + 1]): pre-activations, turned into
            activations in place; the last holds the logits, then the output delta.
        delta: per hidden layer, (batch_size, sizes[l + 1]): back-propagated deltas
            (training only, else None).
        scratch: per hidden layer, (batch_size, sizes[l + 1]): working memory of the
            activation (e.g. leaky ReLU's ``a Z``).
        grads: arrays shaped like the model's params (training only, else None).
        mask, dropped: per weight layer l, (batch_size, sizes[l]): the dropout mask of its
            input and the masked input, for the layers with a ``dropout`` rate above 0
            (None for the others).
    """

    def __init__(self, sizes: list[int], batch_size: int, dtype, training: bool = True,
                 dropout: list[float] | None = None):
        self.sizes, self.batch_size = list(sizes), int(batch_size)
        dtype = np.dtype(dtype)
        self.X = np.empty((batch_size, sizes[0]), dtype=dtype)
        self.y = np.empty(batch_size, dtype=np.int64)
        self.Z = [np.empty((batch_size, n), dtype=dtype) for n in sizes[1:]]
        self.scratch = [np.empty((batch_size, n), dtype=dtype) for n in sizes[1:-1]]
        self.delta = self.grads = None
        if training:
            self.delta = [np.empty((batch_size, n), dtype=dtype) for n in sizes[1:-1]]
            self.grads = [a for n_in, n_out in zip(sizes[:-1], sizes[1:])
                          for a in (np.empty((n_in, n_out), dtype=dtype), np.empty(n_out, dtype=dtype))]
        rates = dropout if dropout is not None else [0.0] * (len(sizes) - 1)
        self.mask = [np.empty((batch_size, n), dtype=dtype) if r > 0 else None for n, r in zip(sizes, rates)]
        self.dropped = [np.empty((batch_size, n), dtype=dtype) if r > 0 else None for n, r in zip(sizes, rates)]
