"""Test set-up: 8 simulated CPU devices, set before JAX is imported anywhere."""

import os

import pytest

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Free every compiled program after each test module.

    A test worker runs ~1,500 tests in one process; each XLA:CPU executable holds ~3 memory
    maps, and one-shot calls compile a program besides their eager run, so keeping them all
    reaches the kernel's vm.max_map_count (65,530) and XLA crashes inside a compile (seen as a
    segfault in two full runs). Caches live within a module, as they would in a user's program.
    """
    yield
    import jax

    from metrix.core import metric as metric_lib
    from metrix.core import state as state_lib

    metric_lib.clear_one_shot_cache()
    state_lib._compute_entries.clear()
    jax.clear_caches()
