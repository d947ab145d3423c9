"""The one application layer: the only code that opens a database session or starts a thread of
the front desk. The HTTP routers (``suanli.server``) and the dashboard's pages (``suanli.web``)
make one call here each; errors are :class:`suanli.app.errors.ServiceError`."""
