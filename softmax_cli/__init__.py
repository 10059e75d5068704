"""softmax: train, evaluate and run NumPy MLP classifiers for MNIST-style images."""

__version__ = "0.1.0"
