"""Layer 2: the enclave, evidence verification, signing and wire formats."""
