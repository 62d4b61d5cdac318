"""Every process a test starts: a process group of its own, and never outliving the run.

``omnirelay serve --workers N`` forks its workers, so each process is started as the
leader of a new process group and is finished off by signalling that whole group.

On Linux each process also asks the kernel for SIGKILL when its parent goes away
(``PR_SET_PDEATHSIG``). The kernel means the *thread* that forked it, so every process is
started from one thread that lives as long as the test process; a worker thread of a test
that ends early would otherwise take the process with it.

:func:`install` (a session fixture calls it) makes SIGINT and SIGTERM to pytest, and
pytest's exit, kill every group still alive: a group leader's own children have no
death signal tied to pytest, and a killed pytest runs no fixture teardown.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import functools
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_SignalHandler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None

_live: dict[int, subprocess.Popen[str]] = {}  # group id (the leader's pid) -> leader
_lock = threading.RLock()  # re-entrant: a signal handler may run while the main thread holds it
# The one thread every process is forked from; it ends only when this process ends.
_spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="process-spawner")
_previous: dict[int, _SignalHandler] = {}


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    return prctl


_prctl = _load_prctl()


def _die_with(parent: int) -> Callable[[], None]:
    """What the child runs between fork and exec: ask to be killed when its parent dies.

    ``preexec_fn`` is unsafe with threads in general because the child could wait forever
    on a lock that another thread held at the fork; this takes none: a C function looked
    up beforehand, and ``getppid``.
    """

    def tie() -> None:
        if _prctl is not None:
            _prctl(_PR_SET_PDEATHSIG, ctypes.c_ulong(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the request took effect
            os._exit(1)

    return tie


def _start(args: list[str], options: dict[str, Any]) -> subprocess.Popen[str]:
    process: subprocess.Popen[str] = subprocess.Popen(
        args, text=True, process_group=0, preexec_fn=_die_with(os.getpid()), **options
    )
    with _lock:
        _live[process.pid] = process
    return process


def spawn(args: Sequence[str], **options: Any) -> subprocess.Popen[str]:
    """Start ``args`` in text mode, in a new process group tied to this test process.

    ``options`` are :class:`subprocess.Popen`'s. Finish it with :func:`stop`, :func:`kill`
    or :func:`run`.
    """
    return _spawner.submit(_start, [str(arg) for arg in args], options).result()


def signal_group(process: subprocess.Popen[str], signum: int) -> None:
    """Send ``signum`` to every process of ``process``'s group that still exists."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)


def group_members(process: subprocess.Popen[str]) -> list[int]:
    """The live (not zombie) processes in ``process``'s group."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # it ended while we looked
        state, process_group = fields[0], int(fields[2])
        if process_group == process.pid and state != "Z":
            members.append(int(stat.parent.name))
    return members


def _forget(process: subprocess.Popen[str]) -> None:
    """Kill whatever is left of the group of an ended leader, and stop tracking it."""
    signal_group(process, signal.SIGKILL)
    with _lock:
        _live.pop(process.pid, None)


@dataclass
class Stopped:
    """How a process ended."""

    output: str  # its stdout (with stderr, when that was sent there)
    returncode: int
    stragglers: list[int]  # pids of its group still alive after it exited (then killed)


def stop(
    process: subprocess.Popen[str],
    signum: int = signal.SIGINT,
    timeout: float = 15.0,
    *,
    read_output: bool = True,
) -> Stopped:
    """Signal the leader, wait for it, then kill what is left of its group.

    ``read_output=False`` when another thread reads the process's output as it comes.
    """
    if process.poll() is None:
        process.send_signal(signum)
    finish = process.communicate if read_output else functools.partial(_waited_for, process)
    try:
        output, _ = finish(timeout=timeout)
    except subprocess.TimeoutExpired:
        signal_group(process, signal.SIGKILL)
        output, _ = finish(timeout=None)
    stragglers = group_members(process)
    _forget(process)
    return Stopped(output or "", process.returncode, stragglers)


def _waited_for(process: subprocess.Popen[str], timeout: float | None) -> tuple[str, str]:
    process.wait(timeout=timeout)
    return "", ""


def kill(process: subprocess.Popen[str], *, read_output: bool = True) -> None:
    """SIGKILL the whole group at once, as a crash would, and reap the leader."""
    signal_group(process, signal.SIGKILL)
    if read_output:
        process.communicate()
    else:
        process.wait()
    _forget(process)


def run(
    args: Sequence[str], *, timeout: float = 60.0, check: bool = False, **options: Any
) -> subprocess.CompletedProcess[str]:
    """:func:`subprocess.run` with captured text output, always with a timeout."""
    process = spawn(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **options)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        signal_group(process, signal.SIGKILL)
        process.communicate()
        raise
    finally:
        _forget(process)
    result = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    if check:
        result.check_returncode()
    return result


def kill_all() -> None:
    """SIGKILL every group still tracked. Safe to call from a signal handler."""
    with _lock:
        leaders = list(_live.values())
    for process in leaders:
        signal_group(process, signal.SIGKILL)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    kill_all()
    previous = _previous.get(signum, signal.SIG_DFL)
    if callable(previous):
        previous(signum, frame)  # SIGINT: KeyboardInterrupt, so pytest stops as usual
    elif previous != signal.SIG_IGN:
        signal.signal(signum, signal.SIG_DFL)  # die of the signal, as without us
        os.kill(os.getpid(), signum)


def install() -> None:
    """Kill every group on SIGINT, SIGTERM and exit. Call it once, from the main thread."""
    if _previous:
        return
    atexit.register(kill_all)
    for signum in (signal.SIGINT, signal.SIGTERM):
        _previous[signum] = signal.signal(signum, _on_signal)
