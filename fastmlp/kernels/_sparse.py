"""A sparse X as CSR rows: its checks at the engine's boundary, and the first layer's
products over each row's nonzeros.

A sparse X is never densified, not even a tile of it. Nothing but the first layer reads
X: its forward product ``Z0 = X[rows] @ W0 + b0`` adds ``x_ik * W0[k]`` to row i's z for
each nonzero ``x_ik``, and its weight gradient ``G0 += X[rows].T @ D0`` adds
``x_ik * D0[i]`` to ``G0[k]``; the first layer passes no error down. Every other layer
runs as on dense rows.

A row's nonzeros are summed in the order they are stored in (sorted or not, as SciPy
allows; a duplicated column adds its values as ``toarray`` would), where the dense loops
add a row's inputs in blocks of four columns: the sums differ by rounding, each within
``n * eps`` of the row's sum of ``|x_ik * w_kj|`` for its ``n`` terms. The order is the
data's, as every other sum of the engine is: the weights are the same to the bit for any
thread count.

The kernels take the column indices as int32 (SciPy's own choice for every matrix of
fewer than 2**31 nonzeros: such a matrix is used as it is, and :func:`as_csr` makes int64
indices that fit int32 once) and the row pointers as int64 (copied at each call where they
are int32: 8 bytes a row). A matrix whose int64 indices :func:`as_csr` could not make int32
(2**31 nonzeros or more) has them copied to int32 at each call, 4 bytes a nonzero.
"""

import numpy as np

from fastmlp.kernels._calls import jit
from fastmlp.kernels._math import FASTMATH, wide_vectors

#: Columns an int32 index can name.
MAX_FEATURES = np.iinfo(np.int32).max


def _check_compressed(X, n_major, n_minor, major, minor):
    """The structure of a CSR (rows major) or CSC (columns major) matrix, checked before
    anything indexes by it: pointers that start at 0, never decrease and end within the
    indices; as many values as indices; every index within the matrix."""
    kind = X.format.upper()
    indptr, indices, values = X.indptr, X.indices, X.data
    for name, array in (("indptr", indptr), ("indices", indices)):
        if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
            raise ValueError(f"X ({kind}): {name} must be a 1-d integer array, "
                             f"got {array.ndim}-d {array.dtype}.")
    if values.ndim != 1:
        raise ValueError(f"X ({kind}): data must be 1-d, got {values.ndim}-d.")
    if indptr.shape[0] != n_major + 1:
        raise ValueError(f"X ({kind}): indptr must have n_{major} + 1 = {n_major + 1} "
                         f"entries, got {indptr.shape[0]}.")
    if values.shape[0] != indices.shape[0]:
        raise ValueError(f"X ({kind}): data and indices must have the same length, got "
                         f"{values.shape[0]} and {indices.shape[0]}.")
    if indptr[0] != 0:
        raise ValueError(f"X ({kind}): indptr must start at 0, got {indptr[0]}.")
    if np.any(indptr[1:] < indptr[:-1]):
        raise ValueError(f"X ({kind}): indptr must never decrease.")
    if indptr[-1] > indices.shape[0]:
        raise ValueError(f"X ({kind}): indptr ends at {indptr[-1]}, past the "
                         f"{indices.shape[0]} stored values.")
    used = indices[: indptr[-1]]
    if used.shape[0] and (used.min() < 0 or used.max() >= n_minor):
        raise ValueError(f"X ({kind}): {minor} indices must lie in [0, {n_minor}), got "
                         f"[{used.min()}, {used.max()}].")


def as_csr(X, dtype):
    """A SciPy sparse X as CSR rows in ``dtype``, as the engine keeps them: CSR as it is,
    but for its values cast to ``dtype`` and int64 column indices that fit made int32;
    CSC (structure checked first) and every other format converted, as scikit-learn
    converts them. A copy only where anything changes, of the sparse arrays alone."""
    if X.ndim != 2:
        raise ValueError(f"X must be 2-d, got {X.ndim}-d.")
    if X.format == "csc":
        # SciPy's conversion trusts the index arrays: a bad one would be read past.
        _check_compressed(X, X.shape[1], X.shape[0], "columns", "row")
    X = X.tocsr()
    _check_compressed(X, X.shape[0], X.shape[1], "rows", "column")
    values = np.require(X.data, dtype, ("C", "A"))
    if values is not X.data or X.indices.dtype != np.int32:
        # SciPy's constructor makes indices that fit int32 (the structure is unchanged).
        X = type(X)((values, X.indices, X.indptr), shape=X.shape)
    return X


def csr_arrays(X, dtype):
    """The CSR arrays of ``X`` (as :func:`as_csr` returns it, or any CSR matrix whose
    values are in ``dtype``) as the kernels take them: values, int32 column indices and
    int64 row pointers, C-contiguous, the structure checked (``ValueError`` if not)."""
    if X.format != "csr":
        raise ValueError(f"X must be a CSR matrix here, got {X.format.upper()}.")
    if X.dtype != dtype:
        raise ValueError(f"X's values must be {np.dtype(dtype)} for this network, got "
                         f"{X.dtype}.")
    _check_compressed(X, X.shape[0], X.shape[1], "rows", "column")
    if X.shape[1] > MAX_FEATURES:
        raise ValueError(f"A sparse X may have at most {MAX_FEATURES} features.")
    values = np.require(X.data, dtype, ("C", "A"))
    # Checked above: every index used lies in [0, n_features), which int32 holds.
    indices = np.require(X.indices[: X.indptr[-1]], np.int32, ("C", "A"))
    indptr = np.require(X.indptr, np.int64, ("C", "A"))
    return values[: X.indptr[-1]], indices, indptr


# Both kernels leave out nothing and add nothing: an empty row gets its bias alone, and a
# stored zero adds a zero product.
@jit("kernels", cache=True, error_model="numpy", fastmath=FASTMATH)
def sparse_forward(X_data, X_indices, X_indptr, order, start, rows, W, b, Z):
    """Z[:rows] = X[order[start:start + rows]] @ W + b, over each row's nonzeros.

    Two nonzeros per pass over the row of Z: each pass loads and stores it once for two
    rows of W (the row of Z stays in L1; the rows of W come from wherever W is).
    """
    wide_vectors()
    fan_out = W.shape[1]
    for i in range(rows):
        row = order[start + i]
        z = Z[i]
        for j in range(fan_out):
            z[j] = b[j]
        first, stop = X_indptr[row], X_indptr[row + 1]
        paired = stop - (stop - first) % 2
        for p in range(first, paired, 2):
            a0, a1 = X_data[p], X_data[p + 1]
            w0, w1 = W[X_indices[p]], W[X_indices[p + 1]]
            for j in range(fan_out):
                z[j] += a0 * w0[j] + a1 * w1[j]
        if paired < stop:
            a0, w0 = X_data[paired], W[X_indices[paired]]
            for j in range(fan_out):
                z[j] += a0 * w0[j]


@jit("kernels", cache=True, error_model="numpy", fastmath=FASTMATH)
def sparse_gradient(X_data, X_indices, X_indptr, order, start, rows, D, G, g):
    """G += X[order[start:start + rows]].T @ D[:rows] and g += D[:rows].sum(0): each
    nonzero ``x_ik`` adds ``x_ik * D[i]`` to row k of G."""
    wide_vectors()
    fan_out = G.shape[1]
    for i in range(rows):
        row = order[start + i]
        d = D[i]
        for j in range(fan_out):
            g[j] += d[j]
        for p in range(X_indptr[row], X_indptr[row + 1]):
            a, gk = X_data[p], G[X_indices[p]]
            for j in range(fan_out):
                gk[j] += a * d[j]
