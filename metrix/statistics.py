"""Statistics of any array: Average, Sum, Std, Min, Max.

Each reduces over all (unmasked) elements; masks follow boolean indexing and may cover the
leading axes only (``mask[b]`` selects ``values[b, ...]``).
"""

from __future__ import annotations

from jaxtyping import Array, Num, Shaped

from metrix.keys import REQUIRED, Key
from metrix.metric import Metric
from metrix.states import AverageState, MaxState, MinState, SumState, WelfordState


class Average(Metric):
    """Weighted mean of all unmasked elements: ``sum(w m x) / sum(w m)`` (NaN if empty).

    Counts are exact past 2^31 elements (double-float accumulation).
    """

    values: Key = REQUIRED
    mask: Key | None = None
    weights: Key | None = None

    class State(AverageState):
        pass

    def get_state(
        self,
        values: Num[Array, "..."],
        mask: Shaped[Array, "..."] | None = None,
        weights: Num[Array, "..."] | None = None,
    ) -> State:
        return self.State.from_values(values, mask=mask, weights=weights)


class Sum(Metric):
    """Sum of all unmasked elements (double-float accumulation)."""

    values: Key = REQUIRED
    mask: Key | None = None

    class State(SumState):
        pass

    def get_state(self, values: Num[Array, "..."], mask: Shaped[Array, "..."] | None = None) -> State:
        return self.State.from_values(values, mask=mask)


class Std(Metric):
    """Standard deviation of all unmasked elements (Welford/Chan, numerically stable).

    ``std = sqrt(M2 / (n - ddof))`` with ``M2 = sum (x - mean)^2``; the state also gives
    ``mean``, ``variance()``, ``sem()`` (flax nnx ``Welford`` uses ddof=0, the default).
    """

    values: Key = REQUIRED
    mask: Key | None = None
    ddof: int = 0

    class State(WelfordState):
        def compute(self):
            return self.std(self.parent.ddof if self.parent is not None else 0)

    def get_state(self, values: Num[Array, "..."], mask: Shaped[Array, "..."] | None = None) -> State:
        return self.State.from_values(values, mask=mask)


class Min(Metric):
    """Smallest unmasked element (+inf for none; NaN propagates)."""

    values: Key = REQUIRED
    mask: Key | None = None

    class State(MinState):
        pass

    def get_state(self, values: Num[Array, "..."], mask: Shaped[Array, "..."] | None = None) -> State:
        return self.State.from_values(values, mask=mask)


class Max(Metric):
    """Largest unmasked element (-inf for none; NaN propagates)."""

    values: Key = REQUIRED
    mask: Key | None = None

    class State(MaxState):
        pass

    def get_state(self, values: Num[Array, "..."], mask: Shaped[Array, "..."] | None = None) -> State:
        return self.State.from_values(values, mask=mask)


__all__ = ["Average", "Sum", "Std", "Min", "Max"]
