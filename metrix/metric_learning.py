"""metric_learning metrics (being written)."""

__all__: list[str] = []
