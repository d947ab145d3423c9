"""Services: the server's business logic over the store. Routers stay thin and call these."""
