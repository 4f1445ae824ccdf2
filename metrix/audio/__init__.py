"""Audio metrics: signal-to-noise ratios (:mod:`~metrix.audio.snr`)."""

import importlib

from metrix.audio.snr import SISDR, SISNR, SNR, si_sdr, si_snr, snr

# Everything the submodules export (their own __all__), without repeating the names here.
_SUBMODULES = ("snr",)
__all__ = [
    name for sub in _SUBMODULES for name in importlib.import_module(f"{__name__}.{sub}").__all__
]
