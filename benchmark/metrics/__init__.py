"""Utility and forgetting metrics; each family is registered in ``benchmark.registry.METRICS``."""
