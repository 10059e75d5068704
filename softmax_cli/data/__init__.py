"""Data: sources (digits, delimited text, IDX, arrays, folders, downloads by name), splits,
preprocessing, and image files to model input."""

from .prepare import Preprocessor, Splits, make_splits
from .sources import Dataset, load_dataset, read_idx, read_pixel_rows

__all__ = ["Dataset", "Preprocessor", "Splits", "load_dataset", "make_splits", "read_idx", "read_pixel_rows"]
