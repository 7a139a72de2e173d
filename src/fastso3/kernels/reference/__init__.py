"""Readable pure-torch twins of every kernel: the test oracles."""
