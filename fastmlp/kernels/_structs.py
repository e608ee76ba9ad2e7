"""The kernels' arguments in a few named structures, each typed by its own definition.

A structure is a ``typing.NamedTuple`` of arrays and scalars whose annotations are the
field kinds below. Numba passes a NamedTuple to compiled code as its fields one by one,
so grouping costs nothing; :func:`numba_type` builds a structure's Numba type in a dtype
from its annotations, so the signature of a kernel called by address
(``fastmlp.kernels._calls``) follows the lines that define the structure, and
:func:`make` builds one from Python values, each scalar converted to its field's type:
one compiled signature per dtype serves every call.

A field is added in one line of its structure (and in the code that sets and reads it).
Arrays are passed as they are: the structure's builder (a function next to its
definition) makes them C-contiguous and aligned, in the field's dtype.
"""

import functools

import numpy as np
from numba import from_dtype, types


def real(dtype):
    """A scalar in the network's dtype."""
    return from_dtype(np.dtype(dtype))


def reals(dtype):
    """A C-contiguous vector in the network's dtype."""
    return real(dtype)[::1]


def real_rows(dtype):
    """A C-contiguous matrix in the network's dtype (one row per chunk or thread)."""
    return real(dtype)[:, ::1]


def int64(dtype):
    """An int64 scalar."""
    return types.int64


def int64s(dtype):
    """A C-contiguous int64 vector."""
    return types.int64[::1]


def int32s(dtype):
    """A C-contiguous int32 vector."""
    return types.int32[::1]


def flag(dtype):
    """A bool scalar."""
    return types.boolean


def flags(dtype):
    """A C-contiguous bool vector."""
    return types.boolean[::1]


def float64s(dtype):
    """A C-contiguous float64 vector, whatever the network's dtype."""
    return types.float64[::1]


def words(dtype):
    """A C-contiguous uint32 vector."""
    return types.uint32[::1]


def read_only(kind):
    """The kind of a read-only array of ``kind`` (one the kernels never write)."""

    def read_only_kind(dtype):
        return kind(dtype).copy(readonly=True)

    return read_only_kind


#: The Python type of each scalar kind's values (``real``: the dtype's scalar type).
_SCALARS = {int64: int, flag: bool}


def numba_type(structure, dtype):
    """The Numba type of ``structure`` (a NamedTuple class of field kinds) in ``dtype``."""
    kinds = structure.__annotations__.values()
    return types.NamedTuple([kind(dtype) for kind in kinds], structure)


@functools.cache
def _fields(structure, dtype):
    """Each field's name and, for a scalar, the Python type of its values in ``dtype``."""
    return tuple(
        (name, np.dtype(dtype).type if kind is real else _SCALARS.get(kind))
        for name, kind in structure.__annotations__.items()
    )


def make(structure, dtype, **values):
    """A ``structure`` of ``values`` (every field by name; others are ignored), each
    scalar converted to its field's type for ``dtype`` where it is not of it already."""
    return structure._make([
        values[name] if scalar_type is None or type(values[name]) is scalar_type
        else scalar_type(values[name])
        for name, scalar_type in _fields(structure, dtype)
    ])
