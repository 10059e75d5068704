"""The network, in plain NumPy: activations, softmax + cross-entropy, the MLP.

Read it next to ``docs/math.md``; nothing here imports the CLI, YAML or the data layer.
"""

from .functional import (ACTIVATIONS, cross_entropy, log_softmax, softmax,
                         softmax_cross_entropy)
from .mlp import MLP, Workspace

__all__ = ["ACTIVATIONS", "MLP", "Workspace", "cross_entropy", "log_softmax", "softmax", "softmax_cross_entropy"]
