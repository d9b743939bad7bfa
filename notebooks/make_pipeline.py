"""Writes notebooks/pipeline.ipynb from the cells below (edit here, then run this file)."""

from build import write

CELLS = [
    ("md", """# Pipelines, chunks by offset, map and map-reduce

Three ideas, made real:

* **Pipelines.** Worker 1 reads a file chunk by chunk and streams each chunk to worker 2,
  which computes on the previous one meanwhile.
* **Ship offsets, not data.** To search a big file, give each worker a newline-aligned byte
  range and let it read the file itself.
* **Map and reduce** on the workers already running.

The sizes are small so this notebook runs in seconds; raise `LINES` and `LOG_MB` to see
the effects clearly."""),
    ("code", """LINES = 40_000      # lines in the numeric file
LOG_MB = 40         # size of the log file to search

%load_ext ipyworkers
%workers start 2"""),
    ("code", """import numpy as np, tempfile, os
workdir = tempfile.mkdtemp(prefix="pipeline-demo-")
numbers = os.path.join(workdir, "numbers.txt")
np.savetxt(numbers, np.random.default_rng(1).random((LINES, 8)) * 100, fmt="%.4f")
print(f"{os.path.getsize(numbers) / 1e6:.1f} MB in {numbers}")"""),
    ("md", """## A two-stage pipeline

`send(obj, to=2)` returns once the object is queued; `for item in stream(frm=1)` takes
them in order and stops at `close(to=2)`. At most a few messages wait at the consumer,
so a fast producer waits instead of filling memory. Both cells return at once: the
stages run at the same time. `numbers` (a path set in the kernel) travels to worker 1 by
itself."""),
    ("code", """%%worker 1
import itertools
from array import array

def read_lines(f, n):
    while True:
        block = list(itertools.islice(f, n))
        if not block:
            return
        yield block

with open(numbers) as f:
    for chunk in read_lines(f, 1000):
        send(array("d", map(float, " ".join(chunk).split())), to=2)
close(to=2)"""),
    ("code", """%%worker 2
import math
total = 0.0
for values in stream(frm=1):
    total += sum(math.sqrt(v) * math.log1p(v) + math.sin(v) * math.cos(v) for v in values)
print(f"total = {total:,.1f}")"""),
    ("code", "%wait\n%timeline"),
    ("md", """## The chunk size is the knob

Every message costs something, whatever its size. In the R version, 10-line chunks ran
14× slower than 1,000-line chunks. The same sweep, through the Python API on the same
workers:"""),
    ("code", """import time
import ipyworkers
cluster = ipyworkers.current()

PRODUCE = '''
with open(numbers) as f:
    for chunk in read_lines(f, {n}):
        send(array("d", map(float, " ".join(chunk).split())), to=2)
close(to=2)
'''
CONSUME = '''
total = 0.0
for values in stream(frm=1):
    total += sum(math.sqrt(v) * math.log1p(v) + math.sin(v) * math.cos(v) for v in values)
'''
throughput = {}
for n in (10, 100, 1000, 10_000):
    started = time.perf_counter()
    tasks = [cluster.run(PRODUCE.format(n=n), on=1, want_result=False),
             cluster.run(CONSUME, on=2, want_result=False)]
    for task in tasks:
        task.wait()
    throughput[n] = LINES / (time.perf_counter() - started)
throughput"""),
    ("code", """import matplotlib.pyplot as plt
sizes = sorted(throughput)
plt.figure(figsize=(6, 3.5))
plt.plot(sizes, [throughput[s] / throughput[1000] * 100 for s in sizes], "o-", label="ipyworkers")
plt.plot([10, 1000], [7, 100], "x--", label="the R version")
plt.xscale("log"); plt.xlabel("lines per chunk"); plt.ylabel("% of 1,000-line throughput")
plt.legend(); plt.title("per-message overhead"); plt.show()"""),
    ("md", """## Grep by offsets

`ipyworkers.chunks(path, size)` gives byte ranges that end just after a newline and cover
the file exactly once. Each worker opens the file and reads only its own ranges, so the
data never moves."""),
    ("code", """log = os.path.join(workdir, "log.txt")
with open(log, "w") as fh:
    for i in range(LOG_MB * 14_000):
        fh.write(f"request {i} {'ERROR' if i % 50 == 7 else 'INFO'} served in {i % 97} ms\\n")

def count_errors(byte_range):
    import re
    start, end = byte_range
    return len(re.findall(rb"ERROR", ipyworkers.read_range(log, start, end)))

ranges = list(ipyworkers.chunks(log, os.path.getsize(log) // 8 + 1))
print(len(ranges), "ranges;", sum(cluster.map(count_errors, ranges)), "lines with ERROR")"""),
    ("md", """## Map and map-reduce

`cluster.map(f, items)` returns the results in input order; each worker gets its next
item as it finishes one. `cluster.mapreduce(mapper, reducer, items)` folds each worker's
results there, then folds the partial results here."""),
    ("code", """def word_count(line_range):
    from collections import Counter
    start, end = line_range
    return Counter(word for line in ipyworkers.range_lines(log, start, end) for word in line.split()[2:3])

from collections import Counter
import operator
cluster.mapreduce(word_count, operator.add, ranges)"""),
    ("code", "%timeline"),
    ("code", "import shutil\nshutil.rmtree(workdir)\n%workers stop"),
]

if __name__ == "__main__":
    write(CELLS, "pipeline.ipynb")
