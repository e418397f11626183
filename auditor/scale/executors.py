"""Where units of work run: a thread pool in this process (the default) or a Dask cluster.

An executor only runs `runner(unit, parts)` somewhere and hands back futures; what to submit
when (the per-account cap, retries, progress) is decided by `auditor.scale.run`, the same for both.
Dask is an optional extra (`pip install '.[dask]'` from an auditor checkout): it is imported only when a
`DaskExecutor` starts, so importing this module never touches it.
"""

from __future__ import annotations

import concurrent.futures
import uuid
from abc import ABC, abstractmethod
from collections.abc import Collection
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, Self

from auditor.errors import InputError

if TYPE_CHECKING:
    from auditor.scale.parts import PartsTarget
    from auditor.scale.units import UnitResult, UnitRunner, WorkUnit

DASK_HINT = "executor 'dask' needs Dask: pip install '.[dask]' from an auditor checkout (the dask extra)"


class UnitFuture(Protocol):
    """A submitted unit: `result()` returns its UnitResult or raises what the unit raised."""

    def result(self) -> UnitResult: ...


class Executor(ABC):
    """Runs units of work; use as a context manager (`with InProcessExecutor() as ex: ...`)."""

    name: ClassVar[str]

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    @abstractmethod
    def start(self) -> None:
        """Acquire the threads or connect to the cluster."""

    @abstractmethod
    def close(self) -> None:
        """Release what `start` acquired (cancelling anything still queued)."""

    @property
    @abstractmethod
    def slots(self) -> int:
        """How many units can run at the same time."""

    @abstractmethod
    def submit(self, runner: UnitRunner, unit: WorkUnit, parts: PartsTarget, attempt: int) -> UnitFuture:
        """Start `runner(unit, parts)`; `attempt` (1, 2, ...) only names the task."""

    @abstractmethod
    def wait(self, futures: Collection[UnitFuture]) -> set[UnitFuture]:
        """Block until at least one of `futures` is done; return the done ones."""


class InProcessExecutor(Executor):
    """Units on a thread pool in this process: one machine, no extra dependency."""

    name: ClassVar[str] = "in-process"

    def __init__(self, threads: int = 4) -> None:
        self.threads = threads
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    def start(self) -> None:
        """Create the thread pool (once)."""
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(
                self.threads, thread_name_prefix="auditor-unit"
            )

    def close(self) -> None:
        """Shut the pool down, cancelling units not yet started."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    @property
    def slots(self) -> int:
        """The number of threads."""
        return self.threads

    def submit(self, runner: UnitRunner, unit: WorkUnit, parts: PartsTarget, attempt: int) -> UnitFuture:
        """Run the unit on a pool thread."""
        if self._pool is None:
            raise RuntimeError("executor not started")
        return self._pool.submit(runner, unit, parts)

    def wait(self, futures: Collection[UnitFuture]) -> set[UnitFuture]:
        """concurrent.futures.wait(FIRST_COMPLETED)."""
        done, _ = concurrent.futures.wait(
            futures,  # type: ignore[arg-type]
            return_when=concurrent.futures.FIRST_COMPLETED,
        )
        return set(done)


class DaskExecutor(Executor):
    """Units as tasks on a Dask distributed cluster: a scheduler address, or a LocalCluster.

    Each task's payload is the runner (a function reference), the unit (source, account, its non-secret
    config section) and where its part goes (a directory, a URL, or back in the result): never
    credentials. Workers use their own host's.
    """

    name: ClassVar[str] = "dask"

    def __init__(
        self,
        scheduler: str | None = None,
        *,
        local_workers: int = 2,
        client: Any = None,
    ) -> None:
        self.scheduler = scheduler
        self.local_workers = local_workers
        self.client: Any = client
        self._owns_client = client is None
        self._cluster: Any = None

    def start(self) -> None:
        """Connect to the scheduler, or start a LocalCluster of worker processes on 127.0.0.1."""
        if self.client is not None:
            return
        try:
            from distributed import Client, LocalCluster
        except ImportError as exc:
            raise InputError("executor", DASK_HINT) from exc
        if self.scheduler is not None:
            try:
                self.client = Client(self.scheduler, timeout="30s")  # type: ignore[no-untyped-call]
            except OSError as exc:
                message = f"cannot reach the Dask scheduler {self.scheduler}: {exc}"
                raise InputError("scheduler", message) from exc
            return
        self._cluster = LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=self.local_workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            # No dashboard; the scheduler's health endpoint on a free loopback port, not 8787.
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
        )
        self.client = Client(self._cluster)  # type: ignore[no-untyped-call]

    def close(self) -> None:
        """Close the client (and the LocalCluster) this executor opened."""
        if self._owns_client and self.client is not None:
            self.client.close()
            self.client = None
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None

    @property
    def slots(self) -> int:
        """Threads across the cluster's workers (at least 1)."""
        threads: dict[str, int] = self.client.nthreads()
        return max(1, sum(threads.values()))

    def submit(self, runner: UnitRunner, unit: WorkUnit, parts: PartsTarget, attempt: int) -> UnitFuture:
        """Submit the unit as one task (pure=False: a retry is a new task, never a cached result)."""
        key = f"auditor-unit-{unit.label}-{attempt}-{uuid.uuid4().hex[:12]}"
        future: UnitFuture = self.client.submit(runner, unit, parts, key=key, pure=False)
        return future

    def wait(self, futures: Collection[UnitFuture]) -> set[UnitFuture]:
        """distributed.wait(FIRST_COMPLETED)."""
        from distributed import wait

        done, _ = wait(list(futures), return_when="FIRST_COMPLETED")  # type: ignore[no-untyped-call]
        return set(done)


def make_executor(
    name: str, *, scheduler: str | None = None, threads: int = 4, local_workers: int = 2
) -> Executor:
    """The executor configured by `executor:` / `--executor` (Dask is imported only when it starts)."""
    if name == "in-process":
        return InProcessExecutor(threads)
    if name == "dask":
        return DaskExecutor(scheduler, local_workers=local_workers)
    raise InputError("executor", f"unknown executor {name!r} (in-process or dask)")
