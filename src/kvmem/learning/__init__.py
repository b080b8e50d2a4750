"""Learning key-value memories: the dual form of trained linear layers, learned and fixed key maps."""
