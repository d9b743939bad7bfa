"""Writes notebooks/teaching.ipynb from the cells below (edit here, then run this file).

The examples are module constants: tests/test_parallel_run.py runs the same cells.
"""

from build import write

SEED = """import os
datadir = '/data/'                    # @1  A
x = os.path.join(datadir, 'x.csv')    # @1  B
y = os.path.join(datadir, 'y.csv')    # @2  C
xy = x + y                            # @1  D
print("all done")                     # @2  E
"""

SEED_AUTO = """import os
datadir = '/data/'                    # A
x = os.path.join(datadir, 'x.csv')    # B
y = os.path.join(datadir, 'y.csv')    # C
xy = x + y                            # D
print("all done")                     # E
"""

BRANCHES = """import time
def step(seconds, value):
    time.sleep(seconds)
    return value
a1 = step(0.4, 100)
a2 = step(0.3, a1 * 2)
a3 = step(0.2, a2 + 1)
b1 = step(0.5, 50)
b2 = step(0.3, b1 + 7)
b3 = step(0.2, b2 * 3)
both = step(0.1, a3 + b3)
print("a:", a3, "b:", b3, "both:", both)
"""

FAILING = """counts = [3, 0, 5]
total = sum(counts)                   # @1
root = total ** 0.5                   # @2
ratio = total / counts[1]             # @1
scaled = [ratio * c for c in counts]  # @2
report = f"scaled: {scaled}"          # @1
"""

CELLS = [
    ("md", """# Teaching with `%%parallel`: from a script to a parallel program

A script is a list of statements. Some of them need the results of others; the rest
could run at the same time. This notebook turns small scripts into programs for two
workers, first by hand, then automatically, and then checks the plan against what
really happened:

1. **Tag by hand.** `# @1` puts a statement on worker 1. ipyworkers works out which
   values must travel between the workers.
2. **Let the planner place them.** `%%parallel --auto` builds the graph of which
   statement needs which, and a list scheduler places it on the workers.
3. **Plan against actual.** The planner predicts how long the program takes; the
   timeline draws the plan (hollow bars) over what ran (filled bars).
4. **Export.** The program, written out as one script per worker, runs without Jupyter.
5. **Chunk size.** Sending data costs something per message: a stream between two
   workers, timed with 10, 100 and 1,000 lines per message.
6. **Failures.** A statement fails; what needs its result is cancelled, and says why.

The whole notebook runs in well under a minute."""),
    ("code", """%load_ext ipyworkers
%workers start 2"""),
    ("md", """## 1. A script, tagged by hand

Five statements, A to E, and an `import` on top. Each statement carries the worker it
runs on. The `import os` line has no tag: lines before the first tag are **setup**.
Every worker that needs what they define runs them itself, so a module is never sent
between workers.

`--show` runs nothing. It prints each worker's program side by side, with the sends and
receives that the tags imply. B reads `datadir`, made by A on the same worker, so it
stays there. C runs on worker 2, so `datadir` must travel 1 → 2. D needs `y` from
worker 2."""),
    ("code", "%%parallel --show\n" + SEED),
    ("code", "%%parallel --block\n" + SEED),
    ("code", "%pull xy\nxy"),
    ("md", """## 2. The same script, placed for you

`%%parallel --auto` needs no tags. It reads which names each statement reads and
writes, and builds the **statement graph**:

* *read after write*: C reads `datadir`, so C comes after A, and if they run on different
  workers, `datadir` travels;
* *write after read* and *write after write*: a name is not rebound before everyone
  who needs its old value has it;
* statements with outside effects (`print`, writing files) keep their order, on one
  worker.

Then it places the graph with **HEFT**, a list scheduler. It takes the statements in
order of how much work still depends on them. It puts each one on the worker where it
would finish first, counting the time to bring its inputs there. A constant such as
`datadir = '/data/'` counts as setup, like the import: each worker makes its own copy,
so nothing has to wait for it. The `# A`..`# E` comments are labels, not tags. A tag
(`# @2`) in an `--auto` cell would pin its statement to that worker."""),
    ("code", "%%parallel --auto --show\n" + SEED_AUTO),
    ("code", "%%parallel --auto --block\n" + SEED_AUTO),
    ("md", """## 3. Two branches: the plan against what happens

Ten statements: setup (an import and a function), two independent branches `a` and
`b` of three steps each, then a statement that combines them, and a `print`.
`step(seconds, value)` stands for real work that takes that long.

The planner has never seen these statements, so it gives each the same weight. It
predicts in *units*, not seconds. It still finds the two branches, because what
counts is the shape of the graph."""),
    ("code", "%%parallel --auto --show\n" + BRANCHES),
    ("code", "%%parallel --auto --block\n" + BRANCHES),
    ("md", """That run measured each statement, keyed by its code. Now the planner has costs in
seconds. The prediction is the **makespan**: when the last statement ends. Serial
time divided by makespan is the predicted speed-up. Two branches of 0.9 s and 1.0 s
plus a short tail give about 1.1 s instead of 2.0 s. The speed-up is less than 2,
because the branches are not equal and the tail runs alone."""),
    ("code", "%%parallel --auto --show\n" + BRANCHES),
    ("code", "%%parallel --auto --block\n" + BRANCHES),
    ("md", """The timeline keeps each `%%parallel` run's plan. Its summary line compares the
predicted and actual wall time and speed-up of the latest run. The drawing overlays
the plan, as hollow dashed bars, on what ran, as filled bars. Hover over a bar for
its code and times. The live dashboard under `%workers start` shows the same, and
`%timeline --save run.html` writes it as a page to keep."""),
    ("code", """import ipyworkers
from IPython.display import HTML
from ipyworkers.notebook.svg import render_svg
from ipyworkers.notebook.timeline import TimelineModel, plan_line

cluster = ipyworkers.current()
model = TimelineModel.from_log(cluster.events)
print(plan_line(model))
plan = model.plans[-1]                      # the last run: its plan and what happened
wall, speedup = plan.actual(model.last_time)
HTML(render_svg(model, window=(plan.at - 0.05, plan.at + max(plan.makespan, wall) + 0.05)))"""),
    ("md", """## 4. The program, written out

`--export DIR` writes the plan as one script per worker. In the scripts, every transfer
is an explicit `send(value, to=k)` or `value = recv(frm=k)`. It also writes a `run.py`
that runs them on fresh workers, outside Jupyter, and prints the final values. This is
the parallel program the cell stands for: read `worker_1.py` next to `worker_2.py`."""),
    ("code", """import os, sys, tempfile
workdir = tempfile.mkdtemp(prefix="teaching-")
program = os.path.join(workdir, "branches")"""),
    ("code", "%%parallel --auto --export {program}\n" + BRANCHES),
    ("code", """print(open(os.path.join(program, "worker_2.py")).read())
!{sys.executable} {program}/run.py"""),
    ("md", """## 5. How big should a message be?

A stream moves many values from one worker to another: `send(obj, to=2)` on one side,
`for obj in stream(frm=1)` on the other. Every message has a fixed cost, whatever its
size, so tiny messages waste time. Huge ones make the consumer wait longer before it
can start. Here worker 1 reads a file and sends it in chunks of 10, 100 and 1,000 lines,
and worker 2 counts them. `data` is a kernel variable: it travels to worker 1 by itself.
The runs differ only in how many messages carry the same lines."""),
    ("code", """import time
LINES = 60_000
data = os.path.join(workdir, "numbers.csv")
with open(data, "w") as fh:
    for i in range(LINES):
        fh.write(f"{i},{i * 2},{i % 7}\\n")

PRODUCE = '''
import itertools
with open(data) as f:
    while chunk := list(itertools.islice(f, {n})):
        send(chunk, to=2)
close(to=2)
'''
CONSUME = '''
lines = 0
for chunk in stream(frm=1):
    lines += len(chunk)
'''
seconds = {}
for n in (10, 100, 1000):
    started = time.perf_counter()
    producer = cluster.run(PRODUCE.format(n=n), on=1, want_result=False)
    consumer = cluster.run(CONSUME, on=2, want_result=False)
    producer.wait(), consumer.wait()
    seconds[n] = time.perf_counter() - started
    assert cluster.pull("lines")["lines"] == LINES
per_message = (seconds[10] - seconds[1000]) / (LINES / 10 - LINES / 1000)
print(f"about {per_message * 1e6:.0f} µs per message, whatever its size")
{n: f"{s * 1000:.0f} ms" for n, s in seconds.items()}"""),
    ("code", """import matplotlib.pyplot as plt
sizes = sorted(seconds)
plt.figure(figsize=(5.5, 3.2))
plt.bar([str(n) for n in sizes], [LINES / seconds[n] / 1000 for n in sizes], color="#54aeff")
plt.xlabel("lines per message"); plt.ylabel("thousand lines per second")
plt.title(f"streaming {LINES:,} lines from worker 1 to worker 2")
plt.tight_layout(); plt.show()"""),
    ("md", """## 6. When a statement fails

`ratio` divides by zero on worker 1. Nothing that needs `ratio` can run:

* `scaled`, on worker 2, is cancelled, and says which input is missing and which
  statement failed;
* `report`, back on worker 1, needs `scaled`: it is cancelled too, and names the same
  first failure, so the cause travels with the data;
* `root` needs only `total`, so it ran.

The cell raises the first error, the one to fix. (Consecutive statements tagged for the
same worker run as one task, so they would be cancelled together.)"""),
    ("code+error", "%%parallel --block\n" + FAILING),
    ("code", "%pull root\nroot"),
    ("code", "import shutil\nshutil.rmtree(workdir)\n%workers stop"),
]

if __name__ == "__main__":
    write(CELLS, "teaching.ipynb")
