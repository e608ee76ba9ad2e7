"""A new machine's first fit, compiled in two processes at once.

A fit's first engine call compiles three kernels, each on its own (they call one another
by address: ``_calls``): the tile's forward and backward pass, the epochs (the member
kernel of ``_epochs``) and the optimizer's step. Numba compiles on one thread at a time
in a process (its compiler lock). So where all three need compiling, on a machine with
two cores or more, the fit starts a helper process (:func:`start`) that compiles the
epochs (the largest of the three), and the driver that runs them, into Numba's disk
cache, while this process compiles the tile's kernel and the step; this process then
loads the helper's two from the cache (:func:`wait`). The kernels are the same machine
code either way, and the results the same to the bit. A cold first fit of the
notebook's network took 4.1 s (float64) and 4.3 s (float32) instead of 6.6 and 6.7 s
in one process (``benchmarks.targets.compile_times()``, 3 fresh processes each, this
and the one-process version one after the other, on a 2-core AMD EPYC).

The helper imports the kernels alone (not the estimators, nor scikit-learn) and saves
only its two to the cache: the functions they call are compiled in both
processes, and two processes adding signatures to one function's cache at once can
each take the same file for its own (Numba numbers them from the index each read),
leaving an entry that names the other's code. Where the helper cannot start, fails or
is killed, this process compiles them itself. ``FASTMLP_COMPILE_PROCESSES=1`` keeps
every compile in this process.
"""

import json
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

# Run as ``python -I -c`` (no current directory, user site or PYTHON* variables on its
# module path: the parent's path is set instead), with the kernels but not the package's
# __init__, which imports the estimators and scikit-learn (about 0.8 s of the start).
_HELPER = """
import json, sys, types
sys.path[:] = json.loads(sys.argv[1])
package = types.ModuleType("fastmlp")
package.__path__ = [sys.argv[2]]
sys.modules["fastmlp"] = package
from fastmlp.kernels import _beside
_beside.compile_here(sys.argv[3])
"""

#: The Numba settings that change the machine code without changing the key of Numba's
#: cache, handed to the helper as this process has them (set in code or not).
_SETTINGS = {"OPT": "NUMBA_OPT", "LOOP_VECTORIZE": "NUMBA_LOOP_VECTORIZE",
             "SLP_VECTORIZE": "NUMBA_SLP_VECTORIZE", "ENABLE_AVX": "NUMBA_ENABLE_AVX",
             "BOUNDSCHECK": "NUMBA_BOUNDSCHECK", "DEBUGINFO_DEFAULT": "NUMBA_DEBUGINFO",
             "CACHE_DIR": "NUMBA_CACHE_DIR"}

_lock = threading.Lock()
_helper = None  # the running helper's subprocess.Popen, if any


def _forget_after_fork():
    global _lock, _helper
    _lock, _helper = threading.Lock(), None  # (the helper is the parent's child)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


def _usable_cpus():
    """The cores this process may run on: those it is allowed, fewer where a cgroup's
    quota (a container's CPU limit) allows fewer."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)
    try:
        with open("/sys/fs/cgroup/cpu.max") as limit:
            quota = cgroup_cpus(limit.read())
    except OSError:
        return cpus
    return cpus if quota is None else min(cpus, quota)


def cgroup_cpus(cpu_max):
    """The whole cores a cgroup v2 ``cpu.max`` (``"quota period"``, or ``"max period"``
    for no limit) allows, at least 1; None for no limit or a text not of that form."""
    parts = cpu_max.split()
    if len(parts) != 2 or parts[0] == "max":
        return None
    try:
        quota, period = int(parts[0]), int(parts[1])
    except ValueError:
        return None
    return max(1, quota // period) if period > 0 else None


def _is_python(executable):
    name = os.path.basename(executable or "").lower()
    return name.startswith("python") and not getattr(sys, "frozen", False)


def wanted():
    """Whether a helper may compile beside this process: the JIT on, two cores or more,
    a Python interpreter to run it (not a frozen application's or an embedding host's
    executable), and not ``FASTMLP_COMPILE_PROCESSES=1``."""
    return (not config.DISABLE_JIT and os.environ.get(PROCESSES_VARIABLE, "").strip() != "1"
            and _is_python(sys.executable) and _usable_cpus() >= 2)


def _helper_environment():
    """This process's environment, with the Numba settings of :data:`_SETTINGS` as this
    process has them."""
    environment = dict(os.environ)
    for setting, variable in _SETTINGS.items():
        value = getattr(config, setting, None)
        if setting == "OPT":
            value = getattr(value, "_raw_value", value)  # ("max" as itself)
        elif isinstance(value, bool):
            value = int(value)
        if value is None or value == "":
            environment.pop(variable, None)
        else:
            environment[variable] = str(value)
    environment[PROCESSES_VARIABLE] = "1"
    return environment


def start(dtype):
    """Start the helper on the epochs kernel of ``dtype`` and its driver, unless one
    runs. The caller has checked that the call's kernels all need compiling."""
    global _helper
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    command = [sys.executable, "-I", "-c", _HELPER, json.dumps(sys.path), package,
               np.dtype(dtype).name]
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


def wait():
    """Wait for the helper, if one runs: its kernels are then in the cache (or, where it
    failed, this process compiles them). Ctrl-C while waiting stops the helper too (at
    another moment of the fit, the helper finishes its compile, seconds, and exits; a
    Ctrl-C in a terminal reaches it as well)."""
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


def compile_here(dtype):
    """The helper's work: compile the epochs kernel of ``dtype``, and the driver that
    runs it on the calling thread, into Numba's disk cache, and save no other function
    there (see the module's docstring)."""
    from numba.core.caching import NullCache
    from numba.core.registry import CPUDispatcher

    from fastmlp.kernels import _api, _epochs

    targets = (_epochs._member_epochs, _epochs.train_epochs_alone)
    for name, module in list(sys.modules.items()):
        if name.startswith("fastmlp.kernels."):
            for value in list(vars(module).values()):
                if isinstance(value, CPUDispatcher) and all(value is not t for t in targets):
                    value._cache = NullCache()
    dtype = np.dtype(dtype)
    _api._member_kernel(dtype)
    _epochs.train_epochs_alone.compile(_api.alone_driver_types(dtype))
