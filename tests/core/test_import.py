"""Importing metrix must not start JAX's backend: programs (the CLI's demo, users' scripts)
set XLA_FLAGS such as --xla_force_host_platform_device_count after importing metrix and
before their first array; a backend started at import time would ignore them."""

import subprocess
import sys


def test_import_does_not_start_the_backend():
    code = (
        "import metrix, metrix.cli.main\n"
        "from jax._src import xla_bridge\n"
        "assert not xla_bridge._backends, 'importing metrix started a JAX backend'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
