try:
    import jax
except ImportError:  # the jax extra is not installed: nothing here can run
    collect_ignore_glob = ["test_*.py"]
else:
    jax.config.update("jax_enable_x64", True)  # float64 comparisons; float32 tests ask for float32 explicitly
