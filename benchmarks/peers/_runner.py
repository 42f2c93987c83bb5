"""Run one measurement in its own process; peak RSS comes from the kernel.

The child prints ``RESULT <json>`` on its last line.  The parent reaps it with
``os.wait4``, whose ``ru_maxrss`` (KiB on Linux) is the child's peak resident
set size as the operating system counted it.  Timing statistics: the median
of the timed runs, and the ratio ``peer / refquant`` (> 1: refquant faster).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

RESULT_TAG = "RESULT "


class ChildFailed(RuntimeError):
    """A measurement process exited non-zero or printed no result."""


def run_child(argv, *, timeout: float = 900.0, env=None) -> dict:
    """Run ``argv`` (a Python command line), return its result dict.

    Adds ``peak_rss_mb`` (``ru_maxrss`` of the child from ``os.wait4``),
    ``wall_s`` and ``returncode``.  Raises :class:`ChildFailed` with the
    last lines of stderr when the child fails or times out.
    """
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True
    )
    timed_out = threading.Event()

    def kill():
        timed_out.set()
        os.kill(proc.pid, signal.SIGKILL)  # only the child this function started

    timer = threading.Timer(timeout, kill)
    timer.start()
    err_lines: list[str] = []
    reader = threading.Thread(target=lambda: err_lines.extend(proc.stderr))
    reader.start()
    out = proc.stdout.read()
    reader.join()
    _, status, usage = os.wait4(proc.pid, 0)
    timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    wall = time.perf_counter() - t0
    result = None
    for line in out.splitlines():
        if line.startswith(RESULT_TAG):
            result = json.loads(line[len(RESULT_TAG) :])
    if timed_out.is_set() or proc.returncode != 0 or result is None:
        tail = "".join(err_lines[-15:])
        why = (
            f"timed out after {timeout:.0f} s"
            if timed_out.is_set()
            else (f"exit code {proc.returncode}")
        )
        raise ChildFailed(f"{' '.join(map(str, argv))}: {why}\n{tail}")
    result["peak_rss_mb"] = usage.ru_maxrss / 1024.0
    result["wall_s"] = wall
    return result


def emit(result: dict) -> None:
    """Child side: print the result line (the parent parses the last one)."""
    sys.stdout.write(RESULT_TAG + json.dumps(result) + "\n")
    sys.stdout.flush()


def self_rss_mb() -> float:
    """Peak RSS of the calling process so far (``ru_maxrss``), MiB."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def time_calls(fn, *, warmup: int, reps: int, budget_s: float, min_reps: int = 3):
    """Seconds of each timed call of ``fn()`` after ``warmup`` untimed calls.

    Stops after ``reps`` calls, or earlier once ``budget_s`` seconds of timed
    calls are spent and at least ``min_reps`` were made.
    """
    for _ in range(warmup):
        fn()
    times: list[float] = []
    spent = 0.0
    while len(times) < reps and (spent < budget_s or len(times) < min_reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        spent += times[-1]
    return times


def median(values) -> float:
    v = sorted(values)
    n = len(v)
    if n == 0:
        raise ValueError("median of no values")
    return v[n // 2] if n % 2 else 0.5 * (v[n // 2 - 1] + v[n // 2])


def ratio_text(peer_s: float, refquant_s: float) -> str:
    """``peer / refquant`` as "12.3x faster" or "0.45x (2.2x slower)"."""
    r = peer_s / refquant_s
    if r >= 1:
        return f"{r:.3g}x faster"
    return f"{r:.3g}x ({1 / r:.3g}x slower)"
