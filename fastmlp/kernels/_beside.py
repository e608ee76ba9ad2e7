"""A new machine's first fit, compiled in two processes at once.

A fit's first engine call compiles three kernels, each on its own (they call one another
by address: ``_calls``): the tile's forward and backward pass, the epochs (the member
kernel of ``_epochs``) and the optimizer's step. Numba compiles on one thread at a time
in a process (its compiler lock). So where all three need compiling, on a machine with
two cores or more, the fit starts a helper process (:func:`start`) that compiles the
epochs and the step into Numba's disk cache, while this process compiles the tile's
kernel and then the driver that calls the three; this process then loads the two from
the cache (:func:`wait`). The kernels are the same machine code either way, and the
results the same to the bit. A cold first fit of the notebook's network took 4.2 s
instead of 6.5 (``benchmarks.targets.compile_times()``, float64, on a 2-core AMD EPYC).

The helper imports the kernels alone (not the estimators, nor scikit-learn) and saves
only its two kernels to the cache: the functions they call are compiled in both
processes, and two processes adding signatures to one function's cache at once can
each take the same file for its own (Numba numbers them from the index each read),
leaving an entry that names the other's code. Where the helper cannot start, fails or
is killed, this process compiles the two itself. ``FASTMLP_COMPILE_PROCESSES=1`` keeps
every compile in this process.
"""

import os
import subprocess
import sys
import threading

import numpy as np
from numba import config

#: The environment variable that, set to 1, keeps every compile in the fitting process.
PROCESSES_VARIABLE = "FASTMLP_COMPILE_PROCESSES"
#: The longest wait for the helper: past it, the helper is stopped and this process
#: compiles its kernels (a compile of seconds on a machine so busy that it is not done).
WAIT_SECONDS = 300

# Run as ``python -c``: the package's kernels without the package's __init__, which
# imports the estimators and scikit-learn (about 0.8 s of the helper's start).
_HELPER = """
import sys, types
package = types.ModuleType("fastmlp")
package.__path__ = [sys.argv[1]]
sys.modules["fastmlp"] = package
from fastmlp.kernels import _beside
_beside.compile_here(sys.argv[2], int(sys.argv[3]))
"""

_lock = threading.Lock()
_helper = None  # the running helper's subprocess.Popen, if any


def _forget_after_fork():
    global _lock, _helper
    _lock, _helper = threading.Lock(), None  # (the helper is the parent's child)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


def _usable_cpus():
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def wanted():
    """Whether a helper may compile beside this process: the JIT on, two cores or more,
    and not ``FASTMLP_COMPILE_PROCESSES=1``."""
    return (not config.DISABLE_JIT and os.environ.get(PROCESSES_VARIABLE, "").strip() != "1"
            and _usable_cpus() >= 2 and bool(sys.executable))


def _helper_environment():
    """This process's environment, with its module path and the Numba settings that
    change the compiled code or where it is cached, as this process has them."""
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(path for path in sys.path if path)
    if config.CACHE_DIR:
        environment["NUMBA_CACHE_DIR"] = config.CACHE_DIR
    if config.BOUNDSCHECK is not None:
        environment["NUMBA_BOUNDSCHECK"] = str(int(config.BOUNDSCHECK))
    environment["NUMBA_OPT"] = str(int(config.OPT))
    environment["NUMBA_DEBUGINFO"] = str(int(config.DEBUGINFO_DEFAULT))
    environment[PROCESSES_VARIABLE] = "1"
    return environment


def start(dtype, solver):
    """Start the helper on the epochs and step kernels of ``dtype`` and ``solver`` (a
    code of ``_optimizers.SOLVERS``), unless one runs. The caller has checked that both,
    and the tile's kernel, need compiling."""
    global _helper
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    command = [sys.executable, "-c", _HELPER, package, np.dtype(dtype).name, str(int(solver))]
    with _lock:
        if _helper is not None:
            return
        try:
            _helper = subprocess.Popen(
                command, env=_helper_environment(), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
        except (OSError, ValueError):
            _helper = None  # this process compiles them


def running():
    """Whether a helper was started and not yet waited for."""
    return _helper is not None


def wait():
    """Wait for the helper, if one runs: its kernels are then in the cache (or, where it
    failed, this process compiles them). Ctrl-C stops the helper too."""
    global _helper
    with _lock:
        helper, _helper = _helper, None
        if helper is None:
            return
        try:
            helper.wait(timeout=WAIT_SECONDS)
        except subprocess.TimeoutExpired:
            helper.kill()
            helper.wait()
        except BaseException:  # Ctrl-C
            helper.kill()
            helper.wait()
            raise


def compile_here(dtype, solver):
    """The helper's work: compile the epochs and step kernels of ``dtype`` and ``solver``
    into Numba's disk cache, and save no other function there (see the module's
    docstring)."""
    from numba.core.caching import NullCache
    from numba.core.registry import CPUDispatcher

    from fastmlp.kernels import _api, _epochs, _optimizers

    targets = (_epochs._member_epochs, _optimizers.FINISH_AND_STEP[solver])
    for name, module in list(sys.modules.items()):
        if name.startswith("fastmlp.kernels."):
            for value in list(vars(module).values()):
                if isinstance(value, CPUDispatcher) and all(value is not t for t in targets):
                    value._cache = NullCache()
    dtype = np.dtype(dtype)
    _api._member_kernel(dtype)
    _api._step_kernel(dtype, solver)
