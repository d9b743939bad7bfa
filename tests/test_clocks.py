"""Another host's clock placed against the kernel's: pure."""

import math

from ipyworkers import protocol as p
from ipyworkers.kernel.clocks import hello_offset, in_kernel_clock, place_clock


def test_the_shortest_round_trip_places_the_clock_and_a_longer_one_does_not():
    offset, error = hello_offset(received=105.0, clock=1000.0), math.inf  # the hello sat 5 ms somewhere
    offset, error = place_clock(offset, error, sent=200.0, answered=200.004, clock=1100.0015)
    assert abs(offset - (-900.0)) < 1e-3 and abs(error - 0.002) < 1e-9
    better, error = place_clock(offset, error, sent=300.0, answered=300.0002, clock=1200.0001)
    assert abs(better - (-900.0)) < 1e-6 and abs(error - 0.0001) < 1e-9
    assert place_clock(better, error, sent=400.0, answered=400.01, clock=1300.0) == (better, error)


def test_a_worker_s_times_move_into_the_kernel_s_clock_and_others_stay():
    finished = p.Finished(1, 1000.0, 1001.0, None, {}, [], [], {})
    moved = in_kernel_clock(finished, -900.0)
    assert (moved.t0, moved.t1) == (100.0, 101.0)
    assert in_kernel_clock(p.Pong(1, 5.0), -900.0) == p.Pong(1, 5.0)
    assert hello_offset(received=7.0, clock=7.0) != 0.0, "0 means this host: never a remote worker's"
