"""A team of threads inside one parallel region: a start handshake and a barrier.

Each of Numba's parallel regions costs a launch and a wake-up of the other threads, and
an epoch of small batches launched one or two per batch (W2: 18 a call, W5: 626). A team
instead enters one region per call and meets at a barrier between the phases of a batch,
which costs about 0.03 microseconds. Numba has no atomic operations, so the three the
team needs (add, load, compare-and-swap on an int64 array) are LLVM's own, emitted by
the intrinsics below.

A barrier is only safe when every member runs at once, and nothing promises that: a
threading layer may run a region's iterations one after the other on one thread (TBB
may; so do Numba's layers held to one thread). So the members first meet in a
handshake: whoever finds the others there within ``JOIN_SPINS`` spins joins a team;
otherwise the first to give up takes every member's work alone, in the same order, and
the others find that decided when they come and leave. Either way the result is the
same, to the bit.

A waiting thread spins with the CPU's pause hint and, after ``PAUSE_SPINS`` spins,
yields its core to the OS at each spin, so that it never starves a member it waits on.

With the JIT off the region's iterations run one after the other, as Python: the
operations below are plain Python then, and callers run alone (``team_size`` 1).
"""

import platform
import sys

import numpy as np
from numba import config, njit

#: Spins of the pause hint before a waiting thread yields its core at each spin.
PAUSE_SPINS = 4096
#: Spins (most of them yields, a microsecond or so each) that a member waits for the
#: others at the start before it runs the whole team's work alone.
JOIN_SPINS = 100_000

# Slots of the int64 array ``sync`` the team shares, each on a cache line of its own.
ARRIVED, JOINED, MODE, RESULT = 0, 8, 16, 24
SYNC_SIZE = 32
UNDECIDED, TEAM, SOLO = 0, 1, 2

if config.DISABLE_JIT:

    def atomic_add(values, index, amount):
        old = values[index]
        values[index] += amount
        return old

    def atomic_load(values, index):
        return values[index]

    def compare_and_swap(values, index, expected, new):
        old = values[index]
        if old == expected:
            values[index] = new
        return old

    def pause():
        pass

    def yield_core():
        pass

else:
    from llvmlite import ir
    from numba.core import cgutils, types
    from numba.extending import intrinsic

    def _element_pointer(context, builder, signature, args):
        array_type, index_type = signature.args[0], signature.args[1]
        array = context.make_array(array_type)(context, builder, args[0])
        index = context.cast(builder, args[1], index_type, types.intp)
        return cgutils.get_item_pointer(context, builder, array_type, array, [index])

    @intrinsic
    def atomic_add(typingctx, values, index, amount):
        """``values[index] += amount`` at once for every thread; returns the old value."""

        def codegen(context, builder, signature, args):
            pointer = _element_pointer(context, builder, signature, args)
            amount = context.cast(builder, args[2], signature.args[2], types.int64)
            return builder.atomic_rmw("add", pointer, amount, "seq_cst")

        return types.int64(values, index, amount), codegen

    @intrinsic
    def atomic_load(typingctx, values, index):
        """``values[index]``, read afresh each time, and no later read moved before it."""

        def codegen(context, builder, signature, args):
            pointer = _element_pointer(context, builder, signature, args)
            return builder.load_atomic(pointer, "acquire", 8)

        return types.int64(values, index), codegen

    @intrinsic
    def compare_and_swap(typingctx, values, index, expected, new):
        """Set ``values[index]`` to ``new`` if it is ``expected``; returns the old value."""

        def codegen(context, builder, signature, args):
            pointer = _element_pointer(context, builder, signature, args)
            expected = context.cast(builder, args[2], signature.args[2], types.int64)
            new = context.cast(builder, args[3], signature.args[3], types.int64)
            pair = builder.cmpxchg(pointer, expected, new, "seq_cst", "seq_cst")
            return builder.extract_value(pair, 0)

        return types.int64(values, index, expected, new), codegen

    def _call_void(name, return_type):
        def codegen(context, builder, signature, args):
            function_type = ir.FunctionType(return_type, [])
            function = cgutils.get_or_insert_function(builder.module, function_type, name)
            builder.call(function, [])
            return context.get_dummy_value()

        return codegen

    def _no_op(context, builder, signature, args):
        return context.get_dummy_value()

    _X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")
    _PAUSE = _call_void("llvm.x86.sse2.pause", ir.VoidType()) if _X86 else _no_op
    # Windows has no sched_yield: there a waiting thread pauses on.
    _YIELD = _PAUSE if sys.platform == "win32" else _call_void("sched_yield", ir.IntType(32))

    @intrinsic
    def pause(typingctx):
        """The CPU's spin-wait hint (x86's ``pause``; nothing elsewhere)."""
        return types.void(), _PAUSE

    @intrinsic
    def yield_core(typingctx):
        """Give this thread's core to the OS scheduler (``sched_yield``)."""
        return types.void(), _YIELD


@njit(cache=True, inline="always")
def _wait(spins):
    """One spin of a waiting thread: the pause hint, then, after ``PAUSE_SPINS``, a yield."""
    if spins < PAUSE_SPINS:
        pause()
    else:
        yield_core()


@njit(cache=True, inline="always")
def join(sync, member, team_size, n_members):
    """Meet the team at the start of a region; returns the members this thread runs
    (``lo, hi``) and the size of the team it is in (0 for none: the work is done
    elsewhere). ``sync`` must be all zeros before the region."""
    member = np.int64(member)  # a prange index may come unsigned
    if team_size == 1:
        if member == 0:
            return 0, n_members, 1
        return 0, 0, 0
    atomic_add(sync, JOINED, 1)
    spins = 0
    while atomic_load(sync, MODE) == UNDECIDED:
        if atomic_load(sync, JOINED) == n_members:
            compare_and_swap(sync, MODE, UNDECIDED, TEAM)
        elif spins >= JOIN_SPINS:
            if compare_and_swap(sync, MODE, UNDECIDED, SOLO) == UNDECIDED:
                return 0, n_members, 1
        else:
            _wait(spins)
            spins += 1
    if atomic_load(sync, MODE) == TEAM:
        return member, member + 1, n_members
    return 0, 0, 0


@njit(cache=True, inline="always")
def barrier(sync, team_size, passed):
    """Wait until every member has arrived here (the ``passed + 1``-th barrier of the
    region); returns ``passed + 1``. Writes before it are seen by every member after it.
    A team of one passes at once."""
    if team_size == 1:
        return passed + 1
    target = (passed + 1) * team_size
    atomic_add(sync, ARRIVED, 1)
    spins = 0
    while atomic_load(sync, ARRIVED) < target:
        _wait(spins)
        spins += 1
    return passed + 1
