"""suanli (算力): a compute-power network.

One front desk where AI teams submit GPU work, many compute centers that run it.
"""

__version__ = "0.1.0"
