"""The control plane: FastAPI app, services over the store, and the background loops."""
