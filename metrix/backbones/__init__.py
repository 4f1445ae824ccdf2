"""Frozen networks behind the feature metrics, and their weight loading.

Every backbone is a Flax module applied as ``module.apply({"params": params}, x)``: the
weights are an explicit pytree argument (never a constant baked into a compiled program),
loaded once from a local file in a safe format (safetensors or npz, no pickle at run time).
Converters from the usual PyTorch checkpoints live beside each network and need torch only
at conversion time.
"""
