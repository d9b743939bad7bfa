"""``python -m ipyworkers.worker``: one worker process."""

from ipyworkers.worker.process import main

main()
