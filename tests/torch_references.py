"""Make the torch reference packages importable outside pytest, for cross-checking by hand.

torchvision's wheel on PyPI is built against CUDA torch: on the CPU torch that
``scripts/test.sh`` installs, its compiled ops (``torchvision::nms``, ...) do not exist and
``import torchvision`` fails while registering their fake/autograd kernels. Nothing metrix's
references use needs those ops (lpips, pytorch-fid and transformers use torchvision's models
and transforms only), so importing this module first stubs the two registration modules::

    python -c "import tests.torch_references, lpips; print(lpips.LPIPS(net='alex'))"

The test suite does the same through :func:`enable`.
"""

import sys
import types

_REGISTRATIONS = ("torchvision._meta_registrations", "torchvision._autograd_registrations")


def enable() -> None:
    """Stub torchvision's kernel-registration modules (idempotent)."""
    for name in _REGISTRATIONS:
        sys.modules.setdefault(name, types.ModuleType(name))


enable()
