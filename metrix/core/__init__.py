"""The state algebra: field kinds, states, buffers, the metric base, keys, type checks,
collections and collectives. Nothing in ``metrix.core`` imports from outside it.
"""
