"""The Numba engine: fused forward/backward kernels and whole-epoch training.

The public functions here take validated NumPy inputs (X dense, or a SciPy sparse matrix,
which runs as CSR rows and is never densified: ``_sparse``), pack the network into one flat
parameter vector (:class:`FlatNetwork`), choose how to run each layer (:func:`plan`) and
call the compiled kernels: a tile's passes in ``_layers``, the optimizer steps in
``_optimizers``, the batches and epochs in ``_epochs``.

The kernels are cached on disk by Numba, keyed by each function's own source file: after
editing one kernel module, delete the ``__pycache__`` folders here so that kernels in the
other modules, which inline it, are compiled afresh.
"""

from fastmlp.kernels._threads import parallel_section, resolve_n_threads  # noqa: I001
from fastmlp.kernels._api import (
    Trainer,
    TrainingInterrupted,
    loss_and_gradients,
    predict,
    warmup,
)
from fastmlp.kernels._buffers import FlatNetwork
from fastmlp.kernels._planner import Plan, plan

__all__ = [
    "FlatNetwork",
    "Plan",
    "Trainer",
    "TrainingInterrupted",
    "loss_and_gradients",
    "parallel_section",
    "plan",
    "predict",
    "resolve_n_threads",
    "warmup",
]
