"""Shared test setup: one persistent XLA compilation cache per test session.

Many tests compile the same tiny model at the same shapes (every end-to-end run, resumes, the
CLI subprocesses); the cache compiles each program once per session instead."""

import os

import jax
import pytest


@pytest.fixture(scope="session", autouse=True)
def compilation_cache(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("jax_compilation_cache"))
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = path  # For the CLI subprocesses.
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0.2"
    yield path
