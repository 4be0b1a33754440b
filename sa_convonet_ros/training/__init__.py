"""Training of the prior the reconstruction starts from: window crops of synthetic rooms with exact labels
(`crops`) and the training loop with its validation and export (`train`). The reconstruction and the node
never import this package."""
