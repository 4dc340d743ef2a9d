"""placer: proven-optimal deployment plans for Mixture-of-Experts inference on GPU clusters."""

__version__ = "0.1.0"
