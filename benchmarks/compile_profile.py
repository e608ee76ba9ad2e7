"""Where a cold first fit's compile goes: ``python -m benchmarks.compile_profile [dtype]``.

Runs the compile target's fit (the notebook's network on its moons, 2 epochs) in a new
process with an empty Numba cache, and prints, from Numba's compile events:

* the fit's seconds, and those spent compiling;
* of the compiling, LLVM's part (optimisation and machine code: the time Numba holds
  its LLVM lock) and the rest (Numba's own passes in Python: bytecode analysis, type
  inference, lowering to LLVM IR);
* each compiled function's own share (its compile less the compiles nested in it), the
  largest first.
"""

import argparse
import os
import subprocess
import sys
import tempfile

_PROFILED_FIT = r"""
import sys, time, warnings
from collections import defaultdict
warnings.simplefilter("ignore")
import fastmlp
from fastmlp.cli import moons_data
from numba.core import event

X, _, y, _ = moons_data()
X = X.astype(sys.argv[1])


class Compiles(event.Listener):
    def __init__(self):
        self.open, self.own, self.total = [], defaultdict(float), 0.0

    def on_start(self, ev):
        self.open.append([ev.data["dispatcher"].py_func.__qualname__, time.perf_counter(), 0.0])

    def on_end(self, ev):
        name, start, nested = self.open.pop()
        spent = time.perf_counter() - start
        self.own[name] += spent - nested
        if self.open:
            self.open[-1][2] += spent
        else:
            self.total += spent


class Held(event.Listener):
    def __init__(self):
        self.depth, self.seconds = 0, 0.0

    def on_start(self, ev):
        if self.depth == 0:
            self.start = time.perf_counter()
        self.depth += 1

    def on_end(self, ev):
        self.depth -= 1
        if self.depth == 0:
            self.seconds += time.perf_counter() - self.start


compiles, llvm = Compiles(), Held()
start = time.perf_counter()
with event.install_listener("numba:compile", compiles), \
        event.install_listener("numba:llvm_lock", llvm):
    fastmlp.MLPClassifier(max_iter=2, random_state=0).fit(X, y)
fit = time.perf_counter() - start
print(f"first fit: {fit:.2f} s, of which compiling {compiles.total:.2f} s")
print(f"  LLVM (optimisation, machine code): {llvm.seconds:.2f} s")
print(f"  Numba's passes (Python: typing, lowering to LLVM IR): "
      f"{compiles.total - llvm.seconds:.2f} s")
print("each function's own compile (less those nested in it), seconds:")
for name, seconds in sorted(compiles.own.items(), key=lambda item: -item[1]):
    if seconds >= 0.05:
        print(f"  {seconds:6.2f}  {name}")
"""


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dtype", nargs="?", default="float64", choices=["float64", "float32"])
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        subprocess.run([sys.executable, "-c", _PROFILED_FIT, args.dtype], env=env, check=True)


if __name__ == "__main__":
    main()
