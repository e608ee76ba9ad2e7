"""How the kernels call one another, compiled as little as they allow: a kernel handed
to others by address, so that it is compiled once; and every kernel compiled with only
the wrappers its callers use (:func:`jit`).

Numba links the code of every function a kernel calls into the kernel's own module, then
optimizes it and generates machine code for it again there. The forward and backward
pass of a tile is the bulk of the engine's code, and it sat under six such levels (the
chunk loop, the three levels of a parallel region, the parallel function, the epoch
loop): before this change, of a first fit's 26 s of compiling some 15 s went to its
seven copies (a cold first fit now takes about 9 to 10 s: ``reports/BENCHMARKS.md``).
Passed in as an argument instead, it is called through a pointer, and its callers
compile only their own code.

The address is an argument, not a constant baked into the callers' code, so the
callers stay cacheable on disk. With the JIT off, a :class:`CompiledKernel` is simply
called as the Python function.
"""

import sys
import threading
from contextlib import contextmanager

from numba import config, types
from numba.core.registry import CPUDispatcher

from fastmlp._gc import collection_paused

#: A compile still running after this long is announced (loading a kernel from Numba's
#: cache takes milliseconds, and is not).
ANNOUNCE_AFTER_SECONDS = 0.5
_announced = threading.Event()


@contextmanager
def announced_compile():
    """Say once per process, on stderr, that the engine is compiling, if it takes long:
    a first fit on a new machine compiles for some seconds, and a user should know why."""
    if _announced.is_set():
        yield
        return
    timer = threading.Timer(ANNOUNCE_AFTER_SECONDS, _announce)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def _announce():
    if not _announced.is_set():
        _announced.set()
        print("fastmlp: compiling the engine's kernels for this machine, once (about 10 s "
              "per dtype; later processes load them from Numba's cache; "
              "python -m fastmlp warmup compiles them all)", file=sys.stderr, flush=True)


def _address(kernel):
    return kernel.address


def pointer_type(signature):
    """The Numba type of a :class:`CompiledKernel` of ``signature``, known before it is
    compiled."""
    return types.ExternalFunctionPointer(signature, get_pointer=_address)


class CompiledKernel:
    """``dispatcher`` compiled for ``signature`` (a Numba signature with concrete types),
    callable from other kernels, through its address, with exactly those types.

    Numba types it as a pointer to a C function (``types.ExternalFunctionPointer``): a
    call with other argument types fails to compile instead of passing the wrong data.
    The kernel must not raise: a C function cannot pass a Python exception on.
    """

    def __init__(self, dispatcher, signature):
        self.dispatcher = dispatcher
        self.signature = signature
        if not config.DISABLE_JIT:
            with announced_compile(), collection_paused():  # (see fastmlp._gc)
                result = dispatcher.get_compile_result(signature)
            self.address = result.library.get_pointer_to_function(
                result.fndesc.llvm_cfunc_wrapper_name
            )
            if not self.address:  # (called, a null address would crash the process)
                raise TypeError(f"{dispatcher.py_func.__qualname__} has no wrapper callable "
                                "from C: compile it with _calls.jit('address').")
            # Read by numba.typeof: the same type for every call, with no typing work.
            self._numba_type_ = pointer_type(signature)

    def __call__(self, *args):
        return self.dispatcher(*args)


#: What each kind of caller needs of Numba's wrappers (see :func:`jit`).
_NEEDS = {"python": ("no_cfunc_wrapper",),
          "address": ("no_cpython_wrapper",),
          "kernels": ("no_cpython_wrapper", "no_cfunc_wrapper")}


def jit(callers, **options):
    """``numba.njit(**options)``, compiled with only the wrapper its ``callers`` need:

    * ``"python"``: the engine's entry points, called from Python. They get the wrapper
      that takes Python's arguments (unboxing every array of every structure argument).
    * ``"address"``: the kernels handed to others by address (:class:`CompiledKernel`).
      They get the wrapper callable from C, and nothing for Python.
    * ``"kernels"``: the parts of kernels, which other kernels call directly. No wrapper.

    Numba gives every function it compiles both wrappers and generates their machine
    code; a kernel's callee is compiled on its own before its code is linked into the
    kernel's, and never runs either. Without the wrappers no caller needs, the cold first
    fit of the notebook's network took 6.2 to 6.9 s instead of 7.8 s, LLVM's part of it
    2.2 to 2.4 s instead of 3.2 s (``python -m benchmarks.compile_profile``, the two
    versions alternately, twice each, on a 2-core AMD EPYC); ``python -m fastmlp warmup``
    42 s instead of 47 s.

    A function without the wrapper for Python, called from Python (by tests, benchmarks,
    :meth:`CompiledKernel.__call__`), runs through a compiled function that calls it,
    made on its first such call. With the JIT off, the function is returned as it is.
    """
    options = dict(options)
    cache = options.pop("cache", False)
    targetoptions = dict(options, nopython=True)
    targetoptions.update((need, True) for need in _NEEDS[callers])
    kind = CPUDispatcher if callers == "python" else _NotFromPython

    def decorate(function):
        if config.DISABLE_JIT:
            return function
        dispatcher = kind(py_func=function, locals={}, targetoptions=targetoptions)
        if cache:
            dispatcher.enable_caching()
        return dispatcher

    return decorate


class _NotFromPython(CPUDispatcher):
    """The dispatcher of a function compiled without the wrapper for Python (see
    :func:`jit`): called from Python, it runs through a compiled function that calls it,
    since its own code has no entry point for Python (Numba would crash)."""

    def __call__(self, *args):
        entry = self.__dict__.get("_python_entry")
        if entry is None:
            entry = self._python_entry = _python_entry(self)
        return entry(*args)


def _python_entry(inner):
    from numba import njit

    if config.DISABLE_JIT:  # (turned off since the import: no compiled caller)
        return inner.py_func

    @njit
    def python_entry(*args):
        return inner(*args)

    return python_entry
