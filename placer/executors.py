"""Where independent solves run: local processes (the default) or a Ray cluster.

An executor takes a top-level function and a list of items and streams back
``(index, value, error)`` as each call finishes, in whatever order they finish; callers put the
answers back in input order themselves, so tables never depend on the executor. A call that
raises comes back with its exception in ``error`` (``value`` is ``None``): ``placer compare``
re-raises it, a sweep records it in the point's row and goes on.

Ray is imported only when a :class:`RayExecutor` runs (``pip install 'placer[ray]'``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from placer.errors import InputError

#: what an executor yields per finished call
Finished = tuple[int, Any, BaseException | None]


class Executor(Protocol):
    """Runs ``fn(item)`` for every item and yields each answer as it finishes."""

    name: str

    def map_unordered(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> Iterator[Finished]: ...


def default_jobs() -> int:
    return os.cpu_count() or 1


@dataclass
class LocalExecutor:
    """``jobs`` worker processes on this machine; ``jobs == 1`` runs every call in this process,
    in order (no start-up cost, and a debugger or a monkeypatch sees the calls)."""

    jobs: int = field(default_factory=default_jobs)
    name: str = "local"

    def map_unordered(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> Iterator[Finished]:
        jobs = max(1, min(self.jobs, len(items)))
        if jobs == 1:
            for index, item in enumerate(items):
                try:
                    value = fn(item)
                except Exception as exc:  # noqa: BLE001 - handed to the caller, who decides
                    yield index, None, exc
                else:
                    yield index, value, None
            return
        yield from _process_pool(fn, items, jobs)


def _process_pool(fn: Callable[[Any], Any], items: Sequence[Any], jobs: int) -> Iterator[Finished]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # spawn, not fork: the parent may hold solver threads, which a forked child would inherit dead
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=context)
    try:
        futures = {pool.submit(fn, item): index for index, item in enumerate(items)}
        for future in as_completed(futures):
            error = future.exception()
            yield futures[future], (None if error is not None else future.result()), error
    finally:
        # a consumer that stops early (Ctrl-C, a work limit) drops the calls not yet started
        pool.shutdown(wait=True, cancel_futures=True)


def _apply(fn: Callable[[Any], Any], item: Any) -> Any:
    """The Ray task: ``fn`` may be any picklable callable (``ray.remote`` takes plain functions only)."""
    return fn(item)


@dataclass
class RayExecutor:
    """One Ray task per call, each declaring ``cpus_per_task`` CPUs (a solve's CP-SAT workers), so
    Ray never runs more solves on a node than it has cores for.

    ``address``: ``None`` uses the Ray instance this process already started (``ray.init`` in a
    notebook or a test); ``"local"`` starts one on this machine with ``local_cpus`` CPUs;
    ``"auto"`` joins the cluster this machine belongs to; anything else is a cluster address
    (``ray://head:10001``). Every node must have placer installed, at this version."""

    address: str | None = None
    cpus_per_task: float = 1.0
    local_cpus: int | None = None
    name: str = "ray"
    started_here: bool = False

    def _connect(self) -> Any:
        try:
            import ray
        except ImportError:
            raise InputError.single("--ray", "Ray is not installed; pip install 'placer[ray]'") from None
        if ray.is_initialized():
            return ray
        if self.address is None:
            raise InputError.single("--ray", "no Ray instance is running in this process; give an address")
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if self.address == "local":
            kwargs["num_cpus"] = self.local_cpus or default_jobs()
        else:
            kwargs["address"] = self.address
        try:
            ray.init(**kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise InputError.single("--ray", f"cannot reach Ray at {self.address!r}: {exc}") from None
        self.started_here = True
        return ray

    def shutdown(self) -> None:
        """Stop the Ray instance this executor started (one it joined or found stays up)."""
        if self.started_here:
            import ray

            ray.shutdown()
            self.started_here = False

    def map_unordered(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> Iterator[Finished]:
        ray = self._connect()
        remote = ray.remote(num_cpus=self.cpus_per_task, max_retries=0)(_apply)
        shared_fn = ray.put(fn)  # sent once (a partial with its settings), resolved in each task
        pending = {remote.remote(shared_fn, item): index for index, item in enumerate(items)}
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    index = pending.pop(ref)
                    try:
                        value = ray.get(ref)
                    except Exception as exc:  # noqa: BLE001 - the task's error (or a lost worker)
                        yield index, None, getattr(exc, "cause", None) or exc
                    else:
                        yield index, value, None
        finally:
            for ref in pending:  # a consumer that stops early cancels what has not finished
                ray.cancel(ref, force=False)
