"""Kernels: torch.library ops with reference, CPU and (later) Triton backends."""
