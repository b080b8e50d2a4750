"""Where tasks run: in this process, on a Dask ``LocalCluster``, or on an existing Dask cluster.

One API for every backend: open an executor with :func:`open_executor` (a context manager
that always shuts down what it started, on success, on errors and on Ctrl-C), then hand
it a top-level function and a list of :class:`Call` objects; :meth:`Executor.imap_unordered`
yields one :class:`Outcome` per call as each completes::

    with open_executor(workers=4) as ex:
        for outcome in ex.imap_unordered(math.factorial, [Call(n, (n,)) for n in range(10)]):
            print(outcome.key, outcome.value)

The function and its arguments must be picklable (a function defined at the top level of
an importable module, plain data as arguments), and on a remote cluster the workers must
have the same packages installed. An exception raised by a task does not stop the others:
it comes back as ``Outcome.error``. ``Outcome.unwrap()`` re-raises it when that is wanted.

Determinism: the backends call the same function on the same arguments; whether results
agree bit for bit is up to the function. Functions using torch should pin the thread
count (a parallel reduction may add in a different order with a different number of
threads); :func:`kvmem.runner.sweep.run_task` runs every task with one torch thread.

Scripts that use ``workers=N`` need the ``if __name__ == "__main__":`` guard: Dask starts
its worker processes with ``spawn``, which re-imports the main module.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

# A scheduler address as Dask writes it: protocol://host:port (tcp, tls, ucx, ws, wss), bare
# host:port (Dask assumes tcp), or an in-process inproc:// address.
_ADDRESS = re.compile(r"^((tcp|tls|ucx|ws|wss)://[^\s/]+(:\d+)?/?|[\w.-]+:\d+|inproc://\S+)$")


class BackendUnavailable(ConnectionError):
    """The Dask scheduler cannot be reached or the local cluster cannot start."""


@dataclass(frozen=True)
class Call:
    """One call of the task function: ``fn(*args, **kwargs)``, reported back under ``key``.

    Attributes:
        key: any hashable label (a task id); it comes back in :class:`Outcome`.
        args: positional arguments (picklable).
        kwargs: keyword arguments (picklable).
    """

    key: Any
    args: tuple = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class Outcome:
    """The result of one :class:`Call`.

    Attributes:
        key: the call's key.
        value: what the function returned (None when it raised).
        error: the exception the function raised, or None.
        seconds: wall time from submission (Dask) or start (in-process) to completion, as
            seen by the driver.
    """

    key: Any
    value: Any = None
    error: BaseException | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when the call returned normally."""
        return self.error is None

    def unwrap(self) -> Any:
        """The value, or raise the call's exception."""
        if self.error is not None:
            raise self.error
        return self.value


class Executor:
    """Runs calls of a top-level function; subclasses are the backends.

    Attributes:
        backend: ``"in-process"``, ``"local-cluster"`` or ``"scheduler"``.
        description: one line for logs ("local cluster, 2 workers").
        workers: number of worker slots (1 in-process).
    """

    backend = "in-process"

    def __init__(self) -> None:
        self.description = "in-process"
        self.workers = 1

    def imap_unordered(self, fn: Callable[..., Any], calls: Iterable[Call]) -> Iterator[Outcome]:
        """Submit every call of ``fn``; yield one :class:`Outcome` per call as it completes.

        In-process calls run one after another in the given order, lazily: a call starts
        when the previous outcome has been consumed. A task's ``Exception`` becomes
        ``Outcome.error``; ``KeyboardInterrupt`` and ``SystemExit`` propagate.

        Example:
            >>> import operator
            >>> with open_executor() as ex:
            ...     outs = list(ex.imap_unordered(operator.truediv, [Call("a", (1, 2)), Call("b", (1, 0))]))
            >>> [(o.key, o.value, type(o.error).__name__) for o in outs]
            [('a', 0.5, 'NoneType'), ('b', None, 'ZeroDivisionError')]
        """
        for call in calls:
            start = time.perf_counter()
            try:
                value = fn(*call.args, **dict(call.kwargs))
            except Exception as err:  # noqa: BLE001 - reported to the caller as the outcome
                yield Outcome(call.key, error=err, seconds=time.perf_counter() - start)
            else:
                yield Outcome(call.key, value=value, seconds=time.perf_counter() - start)

    def close(self) -> None:
        """Release what the executor holds (nothing in-process)."""


class DaskExecutor(Executor):
    """Runs calls as Dask futures on a client's cluster (built by :func:`open_executor`)."""

    def __init__(self, client: Any, cluster: Any | None, backend: str, description: str) -> None:
        super().__init__()
        self.client = client
        self.cluster = cluster
        self.backend = backend
        self.description = description
        self.workers = max(1, len(client.scheduler_info().get("workers", {})))

    def imap_unordered(self, fn: Callable[..., Any], calls: Iterable[Call]) -> Iterator[Outcome]:
        """Submit every call as a Dask future; yield outcomes in completion order.

        Outstanding futures are cancelled when the loop stops early (an exception in the
        caller, ``break``, Ctrl-C), so a shared cluster does not keep computing for nobody.
        """
        from distributed import as_completed

        pending: dict[Any, tuple[Any, float]] = {}
        try:
            for call in calls:
                # pure=False: two calls with equal arguments are still two tasks, and the key
                # Dask invents is unique, so nothing is shared with other clients' results.
                future = self.client.submit(fn, *call.args, pure=False, **dict(call.kwargs))
                pending[future] = (call.key, time.perf_counter())
            for future in as_completed(list(pending), loop=self.client.loop):
                key, start = pending.pop(future)
                seconds = time.perf_counter() - start
                if future.status == "finished":
                    try:
                        value = future.result()
                    except Exception as err:  # noqa: BLE001 - e.g. the result cannot be unpickled here
                        yield Outcome(key, error=err, seconds=seconds)
                    else:
                        yield Outcome(key, value=value, seconds=seconds)
                elif future.status == "error":
                    yield Outcome(key, error=future.exception(), seconds=seconds)
                else:  # cancelled, lost: report it instead of waiting forever
                    yield Outcome(key, error=RuntimeError(f"dask future {future.key} ended as {future.status}"),
                                  seconds=seconds)
                future.release()
        finally:
            if pending:
                self.client.cancel(list(pending), force=True)

    def close(self) -> None:
        """Close the client, then the cluster if this executor started it."""
        try:
            self.client.close()
        finally:
            if self.cluster is not None:
                self.cluster.close()


@contextmanager
def _quiet_dask(level: int) -> Iterator[None]:
    # Dask logs every closed connection and failed task at INFO-ERROR; the driver reports
    # outcomes itself, so the library loggers are held at ``level`` while the executor lives.
    loggers = [logging.getLogger(n) for n in ("distributed", "tornado", "bokeh")]
    before = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(level)
    try:
        yield
    finally:
        for lg, old in zip(loggers, before):
            lg.setLevel(old)


@contextmanager
def _sigint_ignored() -> Iterator[None]:
    # Worker processes started while SIGINT is ignored keep ignoring it (the disposition
    # survives exec, and Python only installs its KeyboardInterrupt handler over the
    # default). A terminal Ctrl-C reaches the whole process group; this way only the
    # driver sees it and shuts the cluster down in order, instead of every worker dying
    # with its own traceback. A Ctrl-C during the few seconds of start-up is dropped.
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is None:  # a handler installed outside Python: leave it alone
        yield
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def check_backend(workers: int | None = None, scheduler: str | None = None) -> None:
    """Validate a backend choice without starting anything.

    Raises:
        ValueError: both given, ``workers`` not a positive int, or ``scheduler`` not an
            address like ``tcp://host:8786``.
    """
    if workers is not None and scheduler is not None:
        raise ValueError("--workers and --scheduler: give one, not both")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"--workers: expected a positive integer, got {workers!r}")
    if scheduler is not None and (not isinstance(scheduler, str) or not _ADDRESS.match(scheduler)):
        raise ValueError(f"--scheduler: expected an address like tcp://host:8786, got {scheduler!r}")


@contextmanager
def open_executor(
    workers: int | None = None,
    scheduler: str | None = None,
    *,
    connect_timeout: float = 5.0,
    log_level: int = logging.CRITICAL,
) -> Iterator[Executor]:
    """Open a backend; close everything it started when the block ends, however it ends.

    Args:
        workers: start a Dask ``LocalCluster`` with this many single-threaded worker
            processes (``None``: run in this process).
        scheduler: join an existing Dask cluster at this address (``tcp://host:port``);
            the cluster is left running, only the client is closed.
        connect_timeout: seconds to wait for the scheduler before giving up.
        log_level: level for Dask's loggers while the executor is open.

    Raises:
        ValueError: see :func:`check_backend`.
        BackendUnavailable: the scheduler did not answer within ``connect_timeout``, or
            the local cluster failed to start.

    Example:
        >>> import math
        >>> with open_executor() as ex:
        ...     sorted(o.value for o in ex.imap_unordered(math.factorial, [Call(n, (n,)) for n in range(5)]))
        [1, 1, 2, 6, 24]
        >>> with open_executor(workers=2) as ex:  # doctest: +SKIP
        ...     ex.description
        'local cluster, 2 workers'
    """
    check_backend(workers, scheduler)
    if not isinstance(connect_timeout, (int, float)) or isinstance(connect_timeout, bool) or connect_timeout <= 0:
        raise ValueError(f"connect_timeout: expected a positive number of seconds, got {connect_timeout!r}")
    if workers is None and scheduler is None:
        executor = Executor()
        try:
            yield executor
        finally:
            executor.close()
        return

    with _quiet_dask(log_level):
        import dask
        from distributed import Client, LocalCluster

        cluster = None
        client = None
        # The nanny writes its worker environment (OMP_NUM_THREADS=1, ...) into this
        # process's os.environ before spawning; put ours back afterwards.
        environ = dict(os.environ)
        try:
            if scheduler is not None:
                try:
                    client = Client(scheduler, timeout=connect_timeout, set_as_default=False)
                except (OSError, TimeoutError) as err:
                    raise BackendUnavailable(
                        f"--scheduler: cannot reach the Dask scheduler at {scheduler} within {connect_timeout:g} s"
                        f" ({type(err).__name__})") from None
                executor: Executor = DaskExecutor(client, None, "scheduler", f"dask scheduler {scheduler}")
            else:
                try:
                    # Dask's nanny sets MALLOC_TRIM_THRESHOLD_=65536 in its workers to hand
                    # memory back to the OS; that also fixes glibc's mmap threshold, so every
                    # large torch buffer is mmapped and faulted in afresh: tasks ran 2x slower
                    # (measured, docs/sweeps.md). Our tasks return small payloads, so unset it.
                    with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}), \
                            _sigint_ignored():
                        cluster = LocalCluster(
                            n_workers=workers,
                            threads_per_worker=1,
                            processes=True,
                            dashboard_address=None,
                            worker_dashboard_address=None,
                            silence_logs=log_level,
                        )
                    client = Client(cluster, timeout=max(connect_timeout, 30.0), set_as_default=False)
                except (OSError, RuntimeError, TimeoutError) as err:
                    raise BackendUnavailable(f"--workers: the Dask local cluster did not start ({err})") from None
                executor = DaskExecutor(client, cluster, "local-cluster",
                                        f"local cluster, {workers} worker{'s' if workers != 1 else ''}")
            yield executor
        finally:
            # Reached on normal exit, on any exception and on KeyboardInterrupt, including
            # one raised while the cluster was still starting.
            try:
                if client is not None:
                    client.close()
            finally:
                try:
                    if cluster is not None:
                        cluster.close()
                finally:
                    if os.environ != environ:
                        os.environ.clear()
                        os.environ.update(environ)
