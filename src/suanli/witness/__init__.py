"""``suanli witness``: an independent cosigner of the ledger's checkpoints.

Run by someone other than the operator (a regulator, an auditor, the FTZ authority), with its
own Ed25519 key and state folder. It reaches the front desk only over HTTP, outbound, like an
agent: it fetches the newest checkpoint and a consistency proof from the size it cosigned last,
checks them, and posts its cosignature/v1 back. It never cosigns a tree that does not extend
the one it cosigned before, and says so loudly.
"""
