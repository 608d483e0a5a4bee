/* Types shared by both sides of the enclave boundary: the status codes every
 * ecall and every C API function returns, and the sizes the boundary fixes.
 * Included by edl/mesatee.edl, by trusted code and by mesatee.h; it includes
 * nothing itself, so cffi can read it. Mirrored by mesatee.errors.Status. */
#ifndef MESATEE_TYPES_H
#define MESATEE_TYPES_H

typedef enum mesatee_status {
    MESATEE_OK = 0,
    MESATEE_ERROR_INVALID_ARGUMENT = 1,
    MESATEE_ERROR_BUFFER_TOO_SMALL = 2,
    MESATEE_ERROR_OUT_OF_MEMORY = 3,
    MESATEE_ERROR_INTERNAL = 4,
    MESATEE_ERROR_CRYPTO = 5,
    MESATEE_ERROR_BOUNDARY = 6,
    MESATEE_ERROR_FORMAT = 10,
    MESATEE_ERROR_PLATFORM = 20,
    MESATEE_ERROR_IMAGE_LOAD = 30,
    MESATEE_ERROR_IMAGE_MODIFIED = 31,
    MESATEE_ERROR_SIGNATURE_INVALID = 32,
    MESATEE_ERROR_SIGNATURE_MISMATCH = 33,
    MESATEE_ERROR_UNSEAL_FAILED = 40,
    MESATEE_ERROR_SEAL_VERSION = 41,
    MESATEE_ERROR_EVIDENCE_MALFORMED = 50,
    MESATEE_ERROR_PLATFORM_NOT_ALLOWED = 51,
    MESATEE_ERROR_UNTRUSTED_ROOT = 52,
    MESATEE_ERROR_CERTIFICATE_INVALID = 53,
    MESATEE_ERROR_REPORT_SIGNATURE_INVALID = 54,
    MESATEE_ERROR_CLAIMS_MISMATCH = 55,
    MESATEE_ERROR_NONCE_MISMATCH = 56,
    MESATEE_ERROR_MRENCLAVE_MISMATCH = 57,
    MESATEE_ERROR_MRSIGNER_MISMATCH = 58,
    MESATEE_ERROR_PRODUCT_ID_MISMATCH = 59,
    MESATEE_ERROR_SECURITY_VERSION_TOO_LOW = 60,
    MESATEE_ERROR_DEBUG_NOT_ALLOWED = 61,
    MESATEE_ERROR_UNSUPPORTED_PLATFORM = 62
} mesatee_status;

typedef enum mesatee_seal_policy {
    MESATEE_SEAL_UNIQUE = 1,  /* bound to mrenclave: only this exact image unseals */
    MESATEE_SEAL_PRODUCT = 2  /* bound to mrsigner + product_id: later versions unseal */
} mesatee_seal_policy;

typedef enum mesatee_platform_kind {
    MESATEE_PLATFORM_SOFTWARE = 1,
    MESATEE_PLATFORM_SGX = 2
} mesatee_platform_kind;

enum {
    MESATEE_HASH_SIZE = 32,
    MESATEE_PUBLIC_KEY_SIZE = 32,
    MESATEE_SEAL_OVERHEAD = 68,       /* header (52) + GCM tag (16) */
    MESATEE_MAX_NONCE_SIZE = 64,
    MESATEE_MAX_EVIDENCE_SIZE = 16384,
    MESATEE_REPORT_DATA_SIZE = 64,
    MESATEE_MAX_ERROR_MESSAGE = 512
};

/* The largest buffer one ecall accepts in either direction. */
#define MESATEE_MAX_BOUNDARY_BUFFER ((unsigned long long)1 << 30)

#endif
