"""metrix: exact, mergeable, jit-safe metrics for JAX.

A metric is a frozen dataclass of configuration; ``get_state(**inputs)`` returns an immutable
state pytree; states ``merge`` across batches, devices and hosts; ``compute()`` gives values.
"""

from metrix.classification import *  # noqa: F401,F403
from metrix.keys import REQUIRED, ContextKeyError, Key
from metrix.metric import Metric
from metrix.state import (
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
)
from metrix.states import *  # noqa: F401,F403
from metrix.statistics import *  # noqa: F401,F403
from metrix.tree import compute, empty_states, get_states, merge
from metrix.typecheck import InputTypeError, set_typechecking, typechecking

__version__ = "0.1.0"
