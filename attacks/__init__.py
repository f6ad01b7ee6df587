"""Audit attacks (membership inference, inversion / concept recovery, adversarial prompts).

Registered in ``benchmark.registry.ATTACKS``; the contract is ``benchmark.api.Attack``.
"""
