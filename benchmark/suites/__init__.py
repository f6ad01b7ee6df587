"""Shipped pytest suites: ``pytest --pyargs benchmark.suites`` tests every registered method.

For each method (built-in or installed through the ``unlearnbench.methods`` entry point): the contract
checks of ``unlearnbench check-method``, then one real cell at the smoke tier (or ``--unlearnbench-tier``)
through the runner — it must finish with finite metrics, within its step budget, and change the weights —
and the adapter's own ``expectations`` for that tier. Select methods with ``-k``; records are cached
like every ``unlearnbench`` fixture run (``--unlearnbench-results``).
"""
