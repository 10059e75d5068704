"""The thread pools training uses, and how they share the cores.

Two pools run a training step: OpenBLAS's, for the matrix products, and numba's, for the
elementwise loops that are big enough to split (the optimiser's update of a large weight
matrix, the gather of a batch's pixels; see :func:`softmax_cli.nn.kernels.parallel_chunks`).
They take turns, so each must leave the cores to the other when it is done:

- ``OPENBLAS_THREAD_TIMEOUT=4``: OpenBLAS's workers go to sleep right after a product
  instead of spinning for about 2^28 cycles (0.1 s), which took the core from numba's worker;
- ``OMP_WAIT_POLICY=PASSIVE``: numba's OpenMP workers sleep between loops instead of
  spinning, which took the core from OpenBLAS's workers.

Measured on MNIST (784-256-10, batch 128, 2-core AMD EPYC): with both, splitting Adam and
the gather over two threads cut an epoch by 0.1-0.15 s; with either pool spinning, the split
made the epoch 1.5-2 x slower than not splitting at all. Both variables are read when the
libraries load, so :func:`prepare_environment` runs before NumPy is imported
(``softmax_cli.cli.main``); a value the user has set is kept.

This module imports nothing heavy: ``softmax --help`` and ``softmax predict`` load it.
"""

from __future__ import annotations

import contextlib
import os

POOL_ENVIRONMENT = {"OPENBLAS_THREAD_TIMEOUT": "4", "OMP_WAIT_POLICY": "PASSIVE"}


def prepare_environment() -> None:
    """Set :data:`POOL_ENVIRONMENT` in ``os.environ`` where the user has not set the variable.

    Call before ``numpy`` (and so OpenBLAS) is first imported; later it has no effect on
    OpenBLAS. Also selects numba's OpenMP threading layer first (workqueue if OpenMP is
    missing), whose launches cost about 20 microseconds against workqueue's 50.
    """
    for name, value in POOL_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    os.environ.setdefault("NUMBA_THREADING_LAYER_PRIORITY", "omp workqueue tbb")


@contextlib.contextmanager
def limit_threads(threads: int | None, numba: bool = False):
    """Limit the BLAS pools (threadpoolctl) and, with ``numba=True``, numba's pool to
    ``threads`` while the context lasts; ``None`` leaves every pool as it is (all cores).

    ``numba=True`` imports numba (about 0.2 s): pass it on the training path only.
    """
    if threads is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads):
        if not numba:
            yield
            return
        import numba as nb

        previous = nb.get_num_threads()
        nb.set_num_threads(min(threads, nb.config.NUMBA_NUM_THREADS))
        try:
            yield
        finally:
            nb.set_num_threads(previous)
