"""The data chain: dataset registry, policy decisions, secure transfers, the ledger service.

Imports ``core`` and ``store``; never ``server``, ``agent``, ``cli`` or ``sdk``.
"""
