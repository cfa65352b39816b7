"""Fixtures: whole-program runs under mocks, cached per set of config overrides for the session."""

from __future__ import annotations

from typing import Callable

import pytest

from tests.recorded_run import RecordedRun, run_recorded


@pytest.fixture(scope="session")
def stack_run() -> Callable[..., RecordedRun]:
    """The dev stack with config overrides (strings, as the CLI stores them; None unsets a key),
    cached per override set. `secrets=` replaces secret config values (userPasswords as JSON text).
    """
    cache: dict[tuple, RecordedRun] = {}

    def run(secrets: dict[str, str] | None = None, **overrides: str | None) -> RecordedRun:
        key = (tuple(sorted(overrides.items())), tuple(sorted((secrets or {}).items())))
        if key not in cache:
            cache[key] = run_recorded(overrides, secrets)
        return cache[key]

    return run


@pytest.fixture(scope="session")
def dev_run(stack_run) -> RecordedRun:
    return stack_run()
