"""Data: sources (digits, delimited text, IDX, arrays, folders, downloads by name), splits,
preprocessing, and image files to model input.

The readers of data files (:mod:`.sources` and the format modules it imports) are loaded on
first use of a name that needs them (PEP 562 ``__getattr__``), so that ``softmax predict`` on
images, which imports :mod:`.images` and :mod:`.prepare` through this package, never loads them.
"""

from importlib import import_module

from .prepare import Preprocessor, Splits, make_splits

_LAZY = {"Dataset": ".dataset", "load_dataset": ".sources", "read_idx": ".idx", "read_pixel_rows": ".sources"}

__all__ = ["Dataset", "Preprocessor", "Splits", "load_dataset", "make_splits", "read_idx", "read_pixel_rows"]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
