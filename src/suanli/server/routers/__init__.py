"""HTTP routers: thin; each handler validates, calls one service, shapes the reply."""
