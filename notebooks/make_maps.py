"""Writes notebooks/maps.ipynb from the cells below (edit here, then run this file)."""

from build import write

CELLS = [
    ("md", """# Fine-grained work: a streaming processor, map-reduce, maps and futures

Many small tasks, at `multiprocessing.Pool` speed, on the workers already running. Tasks
travel in batches (sized by themselves), several in flight per worker; inputs are read as
they go, so a generator, or tasks added one at a time, never pile up in memory.

The first two examples are pyrallel's, as its README gives them."""),
    ("code", """%load_ext ipyworkers
%workers start 2

import operator
import time

import ipyworkers

cluster = ipyworkers.current()"""),
    ("md", """## pyrallel's `ParallelProcessor`: a mapper, and a collector in this kernel

`add_task` queues one task; the collector gets each result as it comes back (on the
cluster's callback thread). Leaving the `with` waits for every task, and raises the
first error, with its traceback from the worker."""),
    ("code", """processed = []

def mapper(line):
    return line.upper()

def collector(data):
    processed.append(data)

lines = [f"line {i} of the file" for i in range(5000)]
with cluster.processor(mapper, collector=collector) as pp:
    for line in lines:
        pp.add_task(line)

print(len(processed), "lines processed, e.g.", sorted(processed)[-1])"""),
    ("md", """## pyrallel's `MapReduce`: 10,000 tiny tasks

Each worker folds its own results with the reducer as they come; the kernel folds the
few partial results. The reducer must be associative and commutative."""),
    ("code", """def mapper(x):
    time.sleep(0.0001)
    return x

def reducer(r1, r2):
    return r1 + r2

started = time.perf_counter()
result = cluster.mapreduce(mapper, reducer, range(10000))
print(f"mapreduce = {result} in {time.perf_counter() - started:.2f} s")"""),
    ("md", """## Maps, as in `multiprocessing.Pool`

`map`, `imap`, `imap_unordered` and `starmap` take several iterables and a `chunksize`,
as Pool's do. The input is read as it goes: over a slow generator the first result comes
right after the first item."""),
    ("code", """def slow_items():
    for i in range(5):
        time.sleep(0.3)
        yield i

started = time.perf_counter()
for value in cluster.imap(lambda v: v * v, slow_items(), progress=False):
    print(f"{time.perf_counter() - started:.1f} s: result {value}")"""),
    ("code", """print(cluster.starmap(pow, [(2, 10), (3, 3)], progress=False))
print(cluster.map(operator.add, range(3), [10, 20, 30], progress=False))
print(sorted(cluster.imap_unordered(abs, range(-3, 3), progress=False)))"""),
    ("md", """## Futures

`submit` runs one call on the worker with the fewest open tasks (or `on=` the ones
named); `as_completed` hands the tasks back as they end."""),
    ("code", """tasks = [cluster.submit(lambda s: time.sleep(s) or f"slept {s} s", s) for s in (0.6, 0.1)]
for task in cluster.as_completed(tasks):
    print(f"worker {task.worker}: {task.result}")"""),
    ("md", "## Errors come back with the worker's traceback, and the item that failed"),
    ("code+error", """def shaky(v):
    if v == 13:
        raise ValueError(f"item {v} is bad")
    return v

cluster.map(shaky, range(40), progress=False)"""),
    ("md", "Each batch is one bar on the timeline; hover over it for its items."),
    ("code", "%timeline"),
    ("code", "%workers stop"),
]

if __name__ == "__main__":
    write(CELLS, "maps.ipynb")
