"""evotune: genetic algorithms for transfer learning in PyTorch."""

__version__ = "0.1.0"
