"""Imported at start-up (as sitecustomize) only by the processes tests/chaos/test_clock_jump.py runs under libfaketime.

libfaketime 0.9.10 (Debian 12) breaks Python 3.11's time.sleep when the monotonic clock is left real: sleep calls
clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, ...) and the library shifts that deadline as if it were a faked
wall time, so the kernel gets a negative one and sleep raises EINVAL (libfaketime #426, fixed after 0.9.10).
A sleep on select()'s relative timeout is the same sleep without that call.
"""

import select
import time


def _sleep(seconds: float) -> None:
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        select.select([], [], [], left)


time.sleep = _sleep
