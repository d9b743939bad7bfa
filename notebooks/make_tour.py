"""Writes notebooks/tour.ipynb from the cells below (edit here, then run this file)."""

from build import write

TAGGED = """datadir = '/data/'      # @1
x = datadir + 'x.csv'   # @1
y = datadir + 'y.csv'   # @2
xy = x + y              # @1
print("all done")       # @2"""

CELLS = [
    ("md", """# ipyworkers: a tour

Tag a cell, or single lines of a cell, with worker IDs. Each piece of code runs on its
worker *asynchronously*; ipyworkers reads the code to find which variables must move,
and sends them **directly from worker to worker**."""),
    ("code", "%load_ext ipyworkers\n%workers start 2"),
    ("md", """## Two cells at once

Both cells below return at once. The ticks stream into the first cell while the second
draws its figure."""),
    ("code", "%%worker 1\nimport time\nfor i in range(5):\n    print('tick', i)\n    time.sleep(0.5)"),
    ("code", "%%worker 2\nimport matplotlib.pyplot as plt\n"
             "plt.plot([1, 3, 2])\nplt.title('drawn on worker 2')\nplt.show()"),
    ("md", "`%wait` blocks until the work in flight ends, and raises if any of it failed."),
    ("code", "%wait"),
    ("md", """## Variables move by themselves

Worker 2 reads `x`, which worker 1 is still computing: its cell waits for worker 1's
cell, then `x` goes from worker 1 to worker 2 over a direct socket, never through this
kernel."""),
    ("code", "%%worker 1\nimport numpy as np, time\ntime.sleep(1)\nx = np.random.rand(10_000_000)"),
    ("code", "%%worker 2\nprint(f'sum of x on worker {worker_id}: {x.sum():.1f}')"),
    ("code", "%wait\n%who_has"),
    ("md", """## One cell, statements on several workers

Tag each statement with `# @ID`. `--show` prints the program each worker runs, with the
sends and receives ipyworkers found."""),
    ("code", "%%parallel --show\n" + TAGGED),
    ("code", "%%parallel --block\n" + TAGGED),
    ("code", "%pull xy\nxy"),
    ("md", """## Errors read like errors

A blocking cell raises the worker's error, with the traceback pointing at this cell's
lines. The worker lives on, with its variables."""),
    ("code+error", "%%worker 1 --block\nvalues = [1, 2, 0]\nratios = [1 / v for v in values]"),
    ("code", "%%worker 1 --block\nprint('worker 1 still has values =', values)"),
    ("md", "## The same from Python\n\n`ipyworkers.Cluster` is the API under the magics, for scripts and tests."),
    ("code", """from ipyworkers import Cluster

with Cluster(2) as cluster:
    cluster.run("a = 6", on=1)
    print(cluster.run("a * 7", on=2, block=True).result)"""),
    ("code", "%workers status"),
    ("code", "%workers stop"),
]


if __name__ == "__main__":
    write(CELLS, "tour.ipynb")
