"""Two checkouts of fastmlp timed side by side: ``python -m benchmarks.ab A B [impl]
[workloads] [rounds]``.

Each checkout runs in a worker process of its own (its own Numba cache), set up once per
workload; rounds alternate which goes first, each time the mean of as many units as run
in one second; the ratio A/B is the median of the rounds' ratios (a shared machine's slow
states hit both sides of a round alike). For example, before and after a change:

    git worktree add /tmp/before <commit>
    python -m benchmarks.ab /tmp/before . numba W2,W3,W5 8
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile

WORKER = r"""
import json, sys, time, warnings
warnings.simplefilter("ignore")
try:
    from fastmlp.bench.implementations import IMPLEMENTATIONS
    from fastmlp.bench.measure import warm_up
    from fastmlp.bench.workloads import WORKLOADS, load
except ImportError:  # a checkout from before the workloads moved into the package
    from benchmarks.measure import warm_up
    from benchmarks.workloads import IMPLEMENTATIONS, WORKLOADS, load
runners = {}
for line in sys.stdin:
    command = json.loads(line)
    if command[0] == "setup":
        _, workload_id, implementation = command
        workload = WORKLOADS[workload_id]
        runners[workload_id] = IMPLEMENTATIONS[implementation](workload, load(workload))
        warm_up(runners[workload_id].run)
        print(json.dumps("ok"), flush=True)
    else:
        _, workload_id, seconds = command
        runner, runs, start = runners[workload_id], 0, time.perf_counter()
        while True:
            runner.run()
            runs += 1
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                break
        print(json.dumps(elapsed / (runs * runner.units_per_run)), flush=True)
"""


def _worker(path, cache):
    env = {**os.environ, "PYTHONPATH": os.path.abspath(path), "NUMBA_CACHE_DIR": cache}
    return subprocess.Popen([sys.executable, "-c", WORKER], cwd=path, env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)


def _ask(worker, command):
    worker.stdin.write(json.dumps(command) + "\n")
    worker.stdin.flush()
    return json.loads(worker.stdout.readline())


def main(argv):
    a_path, b_path = argv[0], argv[1]
    implementation = argv[2] if len(argv) > 2 else "numba"
    workloads = (argv[3] if len(argv) > 3 else "W2,W3,W5").split(",")
    rounds = int(argv[4]) if len(argv) > 4 else 8
    with tempfile.TemporaryDirectory() as a_cache, tempfile.TemporaryDirectory() as b_cache:
        a, b = _worker(a_path, a_cache), _worker(b_path, b_cache)
        try:
            for workload_id in workloads:
                _ask(a, ["setup", workload_id, implementation])
                _ask(b, ["setup", workload_id, implementation])
                times = {a: [], b: []}
                for round_ in range(rounds):
                    for worker in (a, b) if round_ % 2 == 0 else (b, a):
                        times[worker].append(_ask(worker, ["run", workload_id, 1.0]))
                ratios = [ta / tb for ta, tb in zip(times[a], times[b])]
                print(f"{workload_id} {implementation}: A {1e3 * statistics.median(times[a]):.3f}"
                      f" ms, B {1e3 * statistics.median(times[b]):.3f} ms, A/B median "
                      f"{statistics.median(ratios):.3f} (rounds {min(ratios):.3f} to "
                      f"{max(ratios):.3f})", flush=True)
        finally:
            for worker in (a, b):
                worker.stdin.close()
                worker.wait()


if __name__ == "__main__":
    main(sys.argv[1:])
