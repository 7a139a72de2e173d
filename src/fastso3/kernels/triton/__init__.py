"""Triton kernels (the ``"triton"`` backend): CUDA tensors, or CPU tensors under ``TRITON_INTERPRET=1``.

``kernels`` imports triton; it is imported lazily by the ops' dispatch, so fastso3 works without triton.
"""
