"""metrix: exact, mergeable, jit-safe metrics for JAX.

A metric is a frozen dataclass of configuration; ``get_state(**inputs)`` returns an immutable
state pytree; states ``merge`` across batches, devices and hosts; ``compute()`` gives values.
"""

# Domains: each module lists its public metrics, states and functions in __all__.
from metrix.classification import *  # noqa: F401,F403
from metrix.collection import Collection
from metrix.distributed import *  # noqa: F401,F403
from metrix.generative import *  # noqa: F401,F403
from metrix.image import *  # noqa: F401,F403
from metrix.losses import *  # noqa: F401,F403
from metrix.metric_learning import *  # noqa: F401,F403
from metrix.perceptual import *  # noqa: F401,F403
from metrix.ranking import *  # noqa: F401,F403
from metrix.regression import *  # noqa: F401,F403
from metrix.segmentation import *  # noqa: F401,F403
from metrix.summaries import *  # noqa: F401,F403
from metrix.text import *  # noqa: F401,F403
from metrix.text_similarity import *  # noqa: F401,F403
from metrix.keys import REQUIRED, ContextKeyError, Key
from metrix.metric import Metric
from metrix.state import (
    AutoState,
    AutoStateOutput,
    BufferState,
    CapacityOverflowError,
    MergeError,
    State,
    concat_field,
    exact_sum_field,
    max_field,
    min_field,
    nested_field,
    static_field,
    sum_field,
    truncate_field,
)
from metrix.states import *  # noqa: F401,F403
from metrix.statistics import *  # noqa: F401,F403
from metrix.tree import compute, empty_states, get_states, merge
from metrix.checkpoint import CheckpointError, read_checkpoint_info, restore_states, save_states
from metrix.config import ConfigError, load_config
from metrix.evaluate import evaluate, evaluate_scan, pad_batch
from metrix.plotting import plot
from metrix.stateful import Stateful
from metrix import nnx, protocols, stateful  # noqa: E402  (submodules: metrix.nnx, ...)
from metrix.typecheck import InputTypeError, set_typechecking, typechecking

__version__ = "0.1.0"
