"""softmax: train, evaluate and run NumPy MLP classifiers for MNIST-style images.

From Python (imported on first use, so that ``softmax predict`` and ``softmax --help`` stay fast):

- :class:`SoftmaxClassifier`: a scikit-learn estimator trained by ``softmax``'s engine;
- :func:`train`: ``softmax train`` for a config file, dict or Config, returning the run's result;
- :func:`load`: a checkpoint as a model whose ``predict_proba`` takes raw rows, images or image files.
"""

__version__ = "0.1.0"

_API = ("Callback", "Model", "SoftmaxClassifier", "TrainResult", "load", "train")
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
