"""The system's libcrypto (the library the enclave links), called with ctypes, for baselines.

Only what the benchmarks need: the version string, AES-256-GCM encrypt and
decrypt, and ECDSA verification with a key loaded once.
"""

from __future__ import annotations

import ctypes
from ctypes import POINTER, byref, c_char_p, c_int, c_long, c_size_t, c_void_p

LIBRARY = "libcrypto.so.3"

_EVP_CTRL_GCM_GET_TAG = 0x10
_EVP_CTRL_GCM_SET_TAG = 0x11
_TAG_SIZE = 16


def _load() -> ctypes.CDLL:
    lib = ctypes.CDLL(LIBRARY)
    sigs: dict[str, tuple[object, list[object]]] = {
        "OpenSSL_version": (c_char_p, [c_int]),
        "ERR_clear_error": (None, []),
        "EVP_CIPHER_fetch": (c_void_p, [c_void_p, c_char_p, c_char_p]),
        "EVP_CIPHER_CTX_new": (c_void_p, []),
        "EVP_CIPHER_CTX_free": (None, [c_void_p]),
        "EVP_CIPHER_CTX_ctrl": (c_int, [c_void_p, c_int, c_int, c_void_p]),
        "EVP_EncryptInit_ex2": (c_int, [c_void_p, c_void_p, c_char_p, c_char_p, c_void_p]),
        "EVP_EncryptUpdate": (c_int, [c_void_p, c_void_p, POINTER(c_int), c_char_p, c_int]),
        "EVP_EncryptFinal_ex": (c_int, [c_void_p, c_void_p, POINTER(c_int)]),
        "EVP_DecryptInit_ex2": (c_int, [c_void_p, c_void_p, c_char_p, c_char_p, c_void_p]),
        "EVP_DecryptUpdate": (c_int, [c_void_p, c_void_p, POINTER(c_int), c_void_p, c_int]),
        "EVP_DecryptFinal_ex": (c_int, [c_void_p, c_void_p, POINTER(c_int)]),
        "d2i_PUBKEY": (c_void_p, [c_void_p, POINTER(c_char_p), c_long]),
        "EVP_PKEY_free": (None, [c_void_p]),
        "EVP_get_digestbyname": (c_void_p, [c_char_p]),
        "EVP_MD_CTX_new": (c_void_p, []),
        "EVP_MD_CTX_free": (None, [c_void_p]),
        "EVP_DigestVerifyInit": (c_int, [c_void_p, c_void_p, c_void_p, c_void_p, c_void_p]),
        "EVP_DigestVerify": (c_int, [c_void_p, c_char_p, c_size_t, c_char_p, c_size_t]),
    }
    for name, (restype, argtypes) in sigs.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes
    return lib


_lib = _load()


def version() -> str:
    """OpenSSL_version(OPENSSL_VERSION): e.g. 'OpenSSL 3.0.13 30 Jan 2024'."""
    return _lib.OpenSSL_version(0).decode()


class AesGcm:
    """AES-256-GCM with one key; buffers for messages up to ``max_size`` bytes are allocated once.

    Each call makes its own EVP_CIPHER_CTX, as the enclave's sealing does; the
    cipher is fetched once (as the enclave does).
    """

    def __init__(self, key: bytes, max_size: int) -> None:
        if len(key) != 32:
            raise ValueError("AES-256 needs a 32-byte key")
        self._key = key
        self._cipher = _lib.EVP_CIPHER_fetch(None, b"AES-256-GCM", None)
        if not self._cipher:
            raise RuntimeError("EVP_CIPHER_fetch(AES-256-GCM) failed")
        self._ct = ctypes.create_string_buffer(max_size + _TAG_SIZE)
        self._pt = ctypes.create_string_buffer(max(max_size, 1))
        self._max = max_size

    def encrypt(self, iv: bytes, data: bytes) -> int:
        """Encrypt data into the internal buffer (ciphertext then tag); returns the ciphertext size."""
        n = len(data)
        if n > self._max:
            raise ValueError("message larger than max_size")
        ctx = _lib.EVP_CIPHER_CTX_new()
        try:
            out_len = c_int(0)
            ok = _lib.EVP_EncryptInit_ex2(ctx, self._cipher, self._key, iv, None) == 1
            ok = ok and _lib.EVP_EncryptUpdate(ctx, self._ct, byref(out_len), data, n) == 1
            fin = c_int(0)
            ok = ok and _lib.EVP_EncryptFinal_ex(ctx, ctypes.byref(self._ct, out_len.value), byref(fin)) == 1
            ok = ok and _lib.EVP_CIPHER_CTX_ctrl(ctx, _EVP_CTRL_GCM_GET_TAG, _TAG_SIZE, byref(self._ct, n)) == 1
            if not ok:
                _lib.ERR_clear_error()
                raise RuntimeError("AES-GCM encryption failed")
            return n
        finally:
            _lib.EVP_CIPHER_CTX_free(ctx)

    def decrypt(self, iv: bytes, n: int) -> bool:
        """Decrypt the n-byte ciphertext (and its tag) in the internal buffer; True when the tag verifies."""
        ctx = _lib.EVP_CIPHER_CTX_new()
        try:
            out_len = c_int(0)
            ok = _lib.EVP_DecryptInit_ex2(ctx, self._cipher, self._key, iv, None) == 1
            ok = ok and _lib.EVP_DecryptUpdate(ctx, self._pt, byref(out_len), self._ct, n) == 1
            ok = ok and _lib.EVP_CIPHER_CTX_ctrl(ctx, _EVP_CTRL_GCM_SET_TAG, _TAG_SIZE, byref(self._ct, n)) == 1
            fin = c_int(0)
            ok = ok and _lib.EVP_DecryptFinal_ex(ctx, byref(self._pt, out_len.value), byref(fin)) == 1
            if not ok:
                _lib.ERR_clear_error()
            return ok
        finally:
            _lib.EVP_CIPHER_CTX_free(ctx)

    def plaintext(self, n: int) -> bytes:
        return self._pt.raw[:n]

    def ciphertext(self, n: int) -> bytes:
        return self._ct.raw[: n + _TAG_SIZE]


class EcdsaVerifier:
    """ECDSA verification (SHA-256) under one public key, parsed once from DER SubjectPublicKeyInfo."""

    def __init__(self, spki_der: bytes) -> None:
        p = c_char_p(spki_der)
        self._pkey = _lib.d2i_PUBKEY(None, byref(p), len(spki_der))
        if not self._pkey:
            _lib.ERR_clear_error()
            raise ValueError("d2i_PUBKEY could not parse the key")
        self._sha256 = _lib.EVP_get_digestbyname(b"SHA256")
        if not self._sha256:
            raise RuntimeError("no SHA256 digest")

    def verify(self, der_signature: bytes, message: bytes) -> bool:
        ctx = _lib.EVP_MD_CTX_new()
        try:
            ok = _lib.EVP_DigestVerifyInit(ctx, None, self._sha256, None, self._pkey) == 1
            ok = ok and _lib.EVP_DigestVerify(ctx, der_signature, len(der_signature), message, len(message)) == 1
            if not ok:
                _lib.ERR_clear_error()
            return ok
        finally:
            _lib.EVP_MD_CTX_free(ctx)

    def __del__(self) -> None:
        if getattr(self, "_pkey", None):
            _lib.EVP_PKEY_free(self._pkey)
            self._pkey = None
