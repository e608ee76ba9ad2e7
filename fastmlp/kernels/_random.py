"""NumPy's ``RandomState.shuffle``, in compiled code, on the generator's own state.

scikit-learn shuffles the rows before each epoch with ``RandomState.shuffle``: on W2's
3500 rows about 45 microseconds called from Python, a fifth of fastmlp's epoch; 14 here,
in the epoch loop. The draws and the result are NumPy's to the bit: the Mersenne Twister
(MT19937) advanced in place in the generator's state struct, whose address NumPy
publishes for compiled code (``MT19937.ctypes.state_address``), and each index drawn as
NumPy's legacy ``random_interval`` draws it. ``tests/test_kernels.py`` checks both
against NumPy's.
"""

import ctypes

import numpy as np

from fastmlp.kernels._calls import jit
from fastmlp.kernels._math import wide_vectors

_N, _M = 624, 397  # MT19937's state words, and its shift
_STATE_WORDS = _N + 1  # struct {uint32 key[624]; int pos;}
_MAX_ROWS = 2**32  # random_interval draws 32-bit words up to here, 64-bit ones past it


def shuffle_state(random_state, n_rows):
    """The MT19937 state of ``random_state`` as 625 uint32 words (the key and the
    position) sharing its memory, for :func:`shuffle` to shuffle ``n_rows`` rows with;
    None where it cannot: ``random_state`` is not a legacy ``RandomState`` on an MT19937
    generator, or the rows are too many. The view is valid while ``random_state`` lives.
    """
    bit_generator = getattr(random_state, "_bit_generator", None)
    if (
        not isinstance(random_state, np.random.RandomState)
        or type(bit_generator) is not np.random.MT19937
        or n_rows > _MAX_ROWS
    ):
        return None
    struct = (ctypes.c_uint32 * _STATE_WORDS).from_address(bit_generator.ctypes.state_address)
    return np.ctypeslib.as_array(struct)


@jit("kernels", cache=True)
def _twist(key, i, following, shifted):
    y = (np.int64(key[i]) & 0x80000000) | (np.int64(key[following]) & 0x7FFFFFFF)
    key[i] = np.int64(key[shifted]) ^ (y >> 1) ^ (-(y & 1) & 0x9908B0DF)


@jit("kernels", cache=True)
def _regenerate(key):
    """The next 624 words of the twister, in place (NumPy's ``mt19937_gen``): three
    loops without wraparound, as there, which LLVM vectorizes."""
    wide_vectors()
    for i in range(_N - _M):
        _twist(key, i, i + 1, i + _M)
    for i in range(_N - _M, _N - 1):
        _twist(key, i, i + 1, i + _M - _N)
    for i in range(_N - 1, _N):  # a loop, so that no argument is a constant: a call with
        _twist(key, i, i + 1 - _N, i + _M - _N)  # one is compiled apart for it


@jit("kernels", cache=True)
def _temper(key, words):
    """The twister's output: each state word tempered."""
    wide_vectors()
    for p in range(_N):
        y = np.int64(key[p])
        y ^= y >> 11
        y ^= (y << 7) & 0x9D2C5680
        y ^= (y << 15) & 0xEFC60000
        words[p] = y ^ (y >> 18)


@jit("python", cache=True)  # (from Python too: fastmlp.profile times it)
def shuffle(order, state):
    """Shuffle ``order`` in place exactly as ``RandomState.shuffle`` would, drawing from
    (and advancing) the MT19937 state words ``state`` (see :func:`shuffle_state`).

    Fisher-Yates from the end; each index ``j <= i`` is a tempered 32-bit word of the
    twister masked to the smallest all-ones mask covering ``i``, redrawn while above
    ``i``. Rows up to 2**32 only. All indices are drawn first, in a loop without a
    data-dependent branch (a rejected draw is overwritten by the next), then the rows
    are swapped: a rejection, one draw in four, no longer costs a mispredicted branch.
    """
    wide_vectors()
    n = order.shape[0]
    key = state[:_N]
    position = np.int64(state[_N])
    words = np.empty(_N, dtype=np.int64)
    _temper(key, words)
    picks = np.empty(n, dtype=np.int64)
    i = n - 1
    mask = np.int64(0xFFFFFFFF)
    while mask >> 1 >= i and mask > 0:
        mask >>= 1
    while i > 0:
        if position == _N:
            _regenerate(key)
            _temper(key, words)
            position = 0
        while position < _N and i > 0:
            j = words[position] & mask
            position += 1
            picks[i] = j
            i -= np.int64(j <= i)
            mask >>= np.int64(mask >> 1 >= i)  # still the smallest covering i
    for i in range(n - 1, 0, -1):
        j = picks[i]
        order[i], order[j] = order[j], order[i]
    state[_N] = position
