"""Compiled parts, installed here by CMake: the cffi module, libmesatee_host, the signed enclave image."""
