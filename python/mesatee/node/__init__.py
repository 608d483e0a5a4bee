"""Layer 4: the node."""
