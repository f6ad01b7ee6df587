"""Unlearning method adapters, one file per method (see methods/README.md to add one).

Built-ins are registered lazily in ``benchmark.registry.METHODS``; out-of-tree adapters use the
``unlearnbench.methods`` entry point.
"""
