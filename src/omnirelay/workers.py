"""``omnirelay serve --workers N``: N gateway processes sharing one port.

The parent prepares once — migrates the schema, creates the secret key file and the
bootstrap admin key — and reserves the port. Then it forks the workers. Each worker binds
its own listening socket with ``SO_REUSEPORT``, so the kernel spreads connections across
them, and runs the whole gateway: its own caches, upstream pool and log writer.

The parent supervises. A worker that dies while running is started again; one that fails
while starting stops them all. SIGINT (Ctrl-C) or SIGTERM to the parent drains every
worker (``api/drain.py``: no new connections, running calls finish for up to
``drain_timeout_s``, the last batch of log rows flushed), and then the parent exits; a
second signal to the parent is passed on, and cuts what the workers still run. Workers
ignore SIGINT themselves, so Ctrl-C in a terminal, which signals the whole process group,
reaches each worker once, through the parent. A worker whose parent disappears drains too.

With metrics on, the parent gives the workers one folder for prometheus_client's
multiprocess mode (``omnirelay/metrics.py``), emptied at start and removed at the end, and
marks each worker that exits as dead there.

Counters live in each process unless Redis is configured (``OMNIRELAY_REDIS_URL``): without
it, each worker enforces the rate limits on its own, and quotas see another worker's spend
only once it is flushed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import time
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import cast

from aiohttp import web

from omnirelay.api.drain import CUT_GRACE_S, StopSignals, drain
from omnirelay.api.listener import listening, loop_factory
from omnirelay.config import Settings
from omnirelay.server import admin_key_hash, build_app, serve
from omnirelay.store.store import Store

log = logging.getLogger("omnirelay.workers")

WORKER_HEADER = "x-omnirelay-worker"
"""Names the process that answered, so an operator can tell workers apart."""
STARTUP_GRACE_S = 10.0
"""A worker that exits sooner than this after its start failed to start: stop them all."""
PARENT_CHECK_S = 1.0
SHUTDOWN_MARGIN_S = 15.0
"""How long past its drain a worker may take to stop (closing, flushing) before it is killed."""
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM})


def run(settings: Settings, workers: int) -> None:
    """Serve in this process (one worker), or supervise ``workers`` worker processes."""
    if workers <= 1:
        serve(settings)
        return
    if not settings.redis_url:
        log.warning(
            "%d workers without OMNIRELAY_REDIS_URL: each worker counts rate limits and "
            "holds on its own, so RPM/TPM/concurrency limits apply per worker and quotas "
            "see another worker's spend only once it is committed (about a second). Set "
            "OMNIRELAY_REDIS_URL to share them exactly.",
            workers,
        )
    asyncio.run(_prepare(settings))
    metrics_dir = _metrics_folder(settings)
    try:
        with _reserve_port(settings) as reserved:
            port = reserved.getsockname()[1]
            _Supervisor(settings.model_copy(update={"port": port}), workers, reserved).run()
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    for signum in STOP_SIGNALS:  # every worker has stopped: a late signal changes nothing
        signal.signal(signum, signal.SIG_IGN)


def _metrics_folder(settings: Settings) -> Path | None:
    """The workers' shared folder for their metrics (prometheus_client multiprocess mode)."""
    if not settings.metrics_enabled:
        return None
    # Named before prometheus_client is first imported, here or in a worker: it picks its
    # multiprocess mode when imported (this process never imports it before this).
    folder = Path(tempfile.mkdtemp(prefix="omnirelay-metrics-"))
    os.environ[MULTIPROC_ENV] = str(folder)
    return folder


async def _prepare(settings: Settings) -> None:
    """What must happen once, before any worker: migrations, the secret key, the admin key."""
    store = await Store.open(settings)
    try:
        await admin_key_hash(settings, store)
    finally:
        await store.close()


def _reserve_port(settings: Settings) -> socket.socket:
    """Bind (without listening) to hold the port, and to learn it when 0 was asked.

    A socket that does not listen gets no connections, so all of them go to the workers.
    """
    family, kind, proto, _, address = socket.getaddrinfo(
        settings.host, settings.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    reserved = socket.socket(family, kind, proto)
    try:
        reserved.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        reserved.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        reserved.bind(address)
    except BaseException:
        reserved.close()
        raise
    return reserved


class _Supervisor:
    def __init__(self, settings: Settings, count: int, reserved: socket.socket) -> None:
        self._settings = settings
        self._count = count
        self._reserved = reserved
        self._context = multiprocessing.get_context("fork")
        self._workers: dict[int, tuple[BaseProcess, float]] = {}
        self._stopping = False
        self._signalled = 0  # stop signals passed on to the workers

    def run(self) -> None:
        previous = {signum: signal.signal(signum, self._on_signal) for signum in STOP_SIGNALS}
        try:
            for index in range(self._count):
                self._start(index)
            print(
                f"OmniRelay: {self._count} workers on "
                f"http://{self._settings.host}:{self._settings.port}",
                flush=True,
            )
            failed = self._supervise()
        finally:
            self._stop_all()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        if failed:
            raise SystemExit(1)

    def _start(self, index: int) -> None:
        process = self._context.Process(
            target=_worker_main,
            args=(self._settings, index, self._reserved.fileno()),
            name=f"omnirelay-worker-{index}",
        )
        # Signals wait until the child has its own handlers; it unblocks them itself.
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            process.start()
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        self._workers[index] = (process, time.monotonic())

    def _supervise(self) -> bool:
        """Wait on the workers until told to stop; True when one failed to start."""
        while not self._stopping:
            sentinels = {process.sentinel: index for index, (process, _) in self._workers.items()}
            for ready in wait(list(sentinels), timeout=1.0):
                if self._stopping:
                    break
                index = sentinels[cast(int, ready)]
                process, started = self._workers[index]
                process.join()
                _mark_dead(process)
                if time.monotonic() - started < STARTUP_GRACE_S:
                    log.error(
                        "worker %d exited with %s while starting; stopping", index, process.exitcode
                    )
                    return True
                log.warning("worker %d exited with %s; starting it again", index, process.exitcode)
                self._start(index)
        return False

    def _on_signal(self, _signum: int, _frame: object) -> None:
        """The first signal drains the workers; a second one makes them cut what remains."""
        self._stopping = True
        self._signalled += 1
        self._signal_all(signal.SIGTERM)

    def _signal_all(self, signum: int) -> None:
        for process, _ in self._workers.values():
            if process.pid is not None and process.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signum)

    def _stop_all(self) -> None:
        if not self._signalled:  # stopping on its own (a worker failed to start)
            self._signal_all(signal.SIGTERM)
        limit = self._settings.drain_timeout_s + CUT_GRACE_S + SHUTDOWN_MARGIN_S
        deadline = time.monotonic() + limit
        for process, _ in self._workers.values():
            process.join(max(deadline - time.monotonic(), 0.0))
        for process, _ in self._workers.values():
            if process.is_alive():
                log.error("worker pid %s did not stop in time; killing it", process.pid)
                process.kill()
                process.join()
            _mark_dead(process)


def _mark_dead(process: BaseProcess) -> None:
    """A worker exited: its live gauges (calls in flight, queue) stop counting."""
    if process.pid is not None and os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(process.pid)  # type: ignore[no-untyped-call]


def _worker_main(settings: Settings, index: int, reserved_fd: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent relays Ctrl-C as SIGTERM
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    os.close(reserved_fd)  # the parent's copy keeps the port
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        runner.run(_worker(settings, index, os.getppid()))


async def _worker(settings: Settings, index: int, parent: int) -> None:
    app = build_app(settings)
    worker_id = str(os.getpid())

    async def name_worker(_request: web.Request, response: web.StreamResponse) -> None:
        response.headers[WORKER_HEADER] = worker_id

    app.on_response_prepare.append(name_worker)
    signals = StopSignals()
    signals.install([signal.SIGTERM])
    # The same connection limits as a single process: each worker counts its own.
    async with listening(app, settings, reuse_port=True) as runner:
        log.info("worker %d (pid %s) serving", index, worker_id)
        while not signals.stop.is_set() and os.getppid() == parent:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(signals.stop.wait(), PARENT_CHECK_S)
        await drain(runner, settings.drain_timeout_s, signals.hurry)
