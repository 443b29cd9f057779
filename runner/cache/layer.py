"""Any render supervisor, with the render cache in front of it.

A task whose output is in the cache never reaches a worker: its future is done at once with
the cached bytes, and it settles like any render. A real render's output is stored as it
settles. The coordinator sees the same interface either way.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path

from runner.cache.entries import RenderCache, task_key
from runner.cache.folder import claim
from runner.config import RunnerConfig
from runner.render.supervisor import OnDone, Output, Rendered, RenderFailed, RenderSupervisor, Settled, Task, key_of


class CachedRendering:
    def __init__(self, inner: RenderSupervisor, cache: RenderCache) -> None:
        self._inner = inner
        self.cache = cache
        self._hits: dict[Future[Output], Task] = {}
        self._keys: dict[Future[Output], str] = {}  # a real render's cache key, until it settles
        # A miss handed over while the supervisor has no room yet (its pool still starting): hits
        # need no worker, so they are not held up behind the pool's start.
        self._parked: deque[tuple[Task, OnDone, str]] = deque()

    @property
    def workers(self) -> int:
        return self._inner.workers

    @property
    def start_method(self) -> str:
        return self._inner.start_method

    @property
    def restarts(self) -> int:
        return self._inner.restarts

    @property
    def recycles(self) -> int:
        return self._inner.recycles

    def start(self, on_ready: Callable[[], None]) -> None:
        self._inner.start(on_ready)

    def _unpark(self) -> None:
        while self._parked and self._inner.capacity() > 0:
            self._submit_inner(*self._parked.popleft())

    def capacity(self) -> int:
        self._unpark()
        if self._parked:
            return 0
        return max(self._inner.capacity(), 1)

    def in_flight(self) -> int:
        return self._inner.in_flight() + len(self._parked)

    def rendering(self) -> int:
        return self._inner.rendering()

    def submit(self, task: Task, on_done: OnDone) -> None:
        key = task_key(task)
        hit = self.cache.get(key, task)
        if hit is not None:
            future: Future[Output] = Future()
            future.set_result(hit)
            self._hits[future] = task
            on_done(future)
            return

        if self._inner.capacity() > 0:
            self._submit_inner(task, on_done, key)
        else:
            self._parked.append((task, on_done, key))

    def _submit_inner(self, task: Task, on_done: OnDone, key: str) -> None:
        def done(future: Future[Output]) -> None:
            self._keys[future] = key
            on_done(future)

        self._inner.submit(task, done)

    def settle(self, future: Future[Output]) -> Settled:
        if (task := self._hits.pop(future, None)) is not None:
            return Rendered(key_of(task), future.result())
        settled = self._inner.settle(future)
        self._unpark()  # a place is free: the coordinator may have nothing else to hand over
        key = self._keys.pop(future, None)
        if key is not None and isinstance(settled, Rendered):
            self.cache.put(key, settled.chart)
        return settled

    def tick(self) -> list[RenderFailed]:
        failed = self._inner.tick()
        self._unpark()
        return failed

    def cancel_pending(self) -> None:
        self._parked.clear()
        self._inner.cancel_pending()

    def close(self, terminate: bool) -> None:
        self._inner.close(terminate)


def _default_folder(config: RunnerConfig) -> Path:
    return Path(config.output_dir).expanduser() / ".cache"


def render_cache(config: RunnerConfig) -> RenderCache:
    folder = Path(config.cache_dir).expanduser() if config.cache_dir else _default_folder(config)
    return RenderCache(folder, config.cache_max_mb * 1_000_000)


def claim_cache(config: RunnerConfig, create: bool = True) -> Path | None:
    """The cache folder is the runner's, made so, or refused (UsageError); returns it if this call
    made it. Only the default place may hold a cache of the layout before the marker (adopted
    once). Without `create`, only a folder that already exists is checked: the check before any work."""
    if not config.cache:
        return None
    folder = render_cache(config).folder
    made = claim(folder, adoptable=folder.resolve() == _default_folder(config).resolve(), create=create)
    return folder if made else None


def with_cache(supervisor: RenderSupervisor, config: RunnerConfig) -> RenderSupervisor:
    """The supervisor, behind the render cache unless the settings turn it off."""
    return CachedRendering(supervisor, render_cache(config)) if config.cache else supervisor
