"""Rendering charts: the worker-side render function and the pool that runs it."""
