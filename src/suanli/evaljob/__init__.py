"""What runs inside an evaluation job: the model client, the program runner and the entry point.

It imports only the standard library and :mod:`suanli.core`, so the front desk can ship it with the
harness's core into a job's workdir (:mod:`.bundle`) and the job needs nothing installed but
Python and jinja2.
"""
