"""The data at the engine's boundary: X (dense, or a SciPy sparse matrix as CSR rows,
never densified), the targets, the sample weights and the sample order, checked against
the network and handed to the kernels as one :class:`Data`. The kernels index every
array without bounds checks: nothing reaches them unchecked."""

import functools
from typing import NamedTuple

import numpy as np
import scipy.sparse
from numba import njit

from fastmlp.kernels import _sparse
from fastmlp.kernels._structs import int32s, int64s, read_only, real_rows, reals


class Data(NamedTuple):
    """What a kernel reads of the data, in one argument (built, and checked against the
    network, by :meth:`of`). All but ``order`` are read-only, so its type is the same
    whatever the caller's arrays allow."""

    X: read_only(real_rows)  # (n_rows, n_features), dense; 0 rows when X is sparse
    Y: read_only(real_rows)  # the targets; 0 rows: a forward pass only
    sample_weight: read_only(reals)  # empty for unit weights
    order: int64s  # the rows that a kernel's positions stand for (shuffled between epochs)
    X_data: read_only(reals)  # a sparse X's CSR arrays (all three empty when X is dense):
    X_indices: read_only(int32s)  # its column indices,
    X_indptr: read_only(int64s)  # and its row pointers

    @classmethod
    def of(cls, network, X, Y, sample_weight, order):
        """The data of X (dense, or a CSR matrix), Y (None: a forward pass), sample_weight
        and order (as ``Trainer.prepare`` returns them; ``order`` int64) for ``network``
        (a :class:`~fastmlp.kernels._buffers.FlatNetwork`). Every shape and dtype, and a
        sparse X's structure, is checked before any kernel runs."""
        units, dtype = network.units, network.dtype
        forward_only = Y is None
        if forward_only:
            Y = np.empty((0, units[-1]), dtype)
        if scipy.sparse.issparse(X):
            X_data, X_indices, X_indptr = _sparse.csr_arrays(X, dtype)
            dense = np.empty((0, X.shape[1]), dtype)
        else:
            dense = X
            X_data, X_indices, X_indptr = _no_csr_arrays(dtype)
        arrays = (("X", dense, 2), ("Y", Y, 2), ("sample_weight", sample_weight, 1))
        for name, values, ndim in arrays:
            if (not isinstance(values, np.ndarray) or values.ndim != ndim
                    or values.dtype != dtype):
                raise ValueError(f"{name} must be a {ndim}-d {dtype} array for this network.")
            if not (values.flags.c_contiguous and values.flags.aligned):
                raise ValueError(f"{name} must be C-contiguous and aligned.")
        n_rows, n_features = X.shape
        if n_features != units[0]:
            raise ValueError(
                f"X has {n_features} features, but the network takes {units[0]}.")
        if Y.shape != (0 if forward_only else n_rows, units[-1]):
            raise ValueError(
                f"Y must have shape ({n_rows}, {units[-1]}) for this X and network, "
                f"got {Y.shape}."
            )
        if sample_weight.shape[0] not in (0, n_rows):
            raise ValueError(
                f"sample_weight has {sample_weight.shape[0]} values for {n_rows} rows.")
        if order.dtype != np.int64 or order.ndim != 1 or not order.flags.c_contiguous:
            raise ValueError("order must be a 1-d C-contiguous int64 array.")
        # One pass for both bounds: a negative index, read as unsigned, is above any.
        if order.shape[0] > 0 and order.view(np.uint64).max() >= n_rows:
            raise ValueError(f"order must hold row indices of X, in [0, {n_rows}).")
        return cls(
            X=_read_only(dense), Y=_read_only(Y), sample_weight=_read_only(sample_weight),
            order=order, X_data=_read_only(X_data), X_indices=_read_only(X_indices),
            X_indptr=_read_only(X_indptr),
        )


@njit(cache=True, error_model="numpy", inline="always")
def is_sparse(data):
    """Whether X is given as CSR rows (a CSR matrix has n_rows + 1 row pointers)."""
    return data.X_indptr.shape[0] > 0


def empty_weights(dtype):
    """No sample weights (unit weights), as the kernels take them."""
    return np.empty(0, dtype=dtype)


def _kernel_array(values, dtype):
    """``values`` as the kernels take them: C-contiguous and aligned, copied only if not."""
    return np.require(values, dtype=dtype, requirements=("C", "A"))


def kernel_X(X, dtype):
    """X as the kernels take it: a dense array (see ``_kernel_array``), or a SciPy sparse
    matrix as CSR rows (``_sparse.as_csr``: never densified)."""
    if scipy.sparse.issparse(X):
        return _sparse.as_csr(X, dtype)
    return _kernel_array(X, dtype)


def kernel_arrays(X, Y, sample_weight, dtype):
    """X (see :func:`kernel_X`), Y and sample_weight (None: empty, for unit weights) as
    the kernels take them: dense arrays read-only (views where they were writable), as
    :class:`Data` holds them, so that a caller who trains on them epoch after epoch
    makes those views once."""
    if sample_weight is None:
        sample_weight = empty_weights(dtype)
    X = kernel_X(X, dtype)
    if not scipy.sparse.issparse(X):
        X = _read_only(X)
    return X, _read_only(_kernel_array(Y, dtype)), _read_only(_kernel_array(sample_weight, dtype))


def _read_only(values):
    """``values`` read-only (a view, if they were not): the kernels' data has one type
    whatever the caller's flags."""
    if not values.flags.writeable:
        return values
    view = values.view()
    view.flags.writeable = False
    return view


@functools.cache
def _no_csr_arrays(dtype):
    """A dense X's CSR arrays, as a :class:`Data` holds them: empty, made once per
    dtype."""
    return tuple(_read_only(np.empty(0, kind)) for kind in (dtype, np.int32, np.int64))


def nonzeros_per_row(data):
    """A sparse X's mean count of nonzeros a row, as ``plan`` takes it (None: dense)."""
    if data.X_indptr.shape[0] == 0:
        return None
    return data.X_indptr[-1] / max(data.X_indptr.shape[0] - 1, 1)
