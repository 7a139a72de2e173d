import pytest

jax = pytest.importorskip("jax")
jax.config.update("jax_enable_x64", True)  # float64 comparisons; float32 tests ask for float32 explicitly
