"""fastso3: fast, exact E(3)/SO(3)-equivariant building blocks for PyTorch."""

__version__ = "0.1.0"
