"""Python's cyclic garbage collector, held off while fastmlp makes many lasting objects.

Importing fastmlp (Numba above all) and loading its first compiled kernels (Numba's
typing and target registries) each make some 10^5 objects that live as long as the
process. Allocations that many set off a full collection, which scans every object
of the process, scikit-learn's and SciPy's among them, and frees nothing: one such
collection took about 0.1 s of a 0.35 s import, and another as much of a first small
fit with a warm cache (``gc.callbacks`` timing each collection, on a 2-core AMD EPYC).
"""

import gc
from contextlib import contextmanager


@contextmanager
def collection_paused():
    """No automatic collection in the block (nothing changes where the collector was
    off already); collections resume after it, and free what the block left."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
