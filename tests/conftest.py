"""Shared test setup: quickly compiled programs, and one persistent XLA compilation cache per
test session.

The tests compile hundreds of tiny programs, and compiling is most of their time. XLA:CPU at its
lowest optimisation level, without the fusion emitters, compiles them about twice as fast and
computes the same values up to float rounding (every comparison in the suite is between programs
compiled alike, or within a tolerance). Set through XLA_FLAGS before any backend starts, so the
in-process tests and the subprocesses they start (CLI runs, sharding workers) all get it; a
user's own XLA_FLAGS are kept, and a run with XLA_FLAGS naming an optimisation level is left as
it is.

Many tests also compile the same tiny model at the same shapes (every end-to-end run, resumes,
the CLI subprocesses); the cache compiles each program once per session instead."""

import os

import jax
import pytest

FAST_COMPILE_FLAGS = "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false"
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {FAST_COMPILE_FLAGS}".strip()


@pytest.fixture(scope="session", autouse=True)
def compilation_cache(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("jax_compilation_cache"))
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = path  # For the CLI subprocesses.
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0.2"
    yield path
