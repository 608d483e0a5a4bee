/* mesatee.h — the one native API of mesatee (C ABI).
 *
 * Every function returns a mesatee_status (see mesatee_types.h); on failure
 * mesatee_last_error_message() returns a message saying what was wrong, for the
 * calling thread, until its next call into this library.
 *
 * Buffer ownership:
 *  - Inputs are borrowed for the duration of the call only; the library keeps
 *    no pointer to them.
 *  - mesatee_buffer outputs are allocated by the library and owned by the
 *    caller, who releases them with mesatee_buffer_free (also on error paths,
 *    where they are left empty).
 *  - Fixed-capacity outputs (seal, unseal) are written into the caller's
 *    memory; mesatee_sealed_size / mesatee_unsealed_capacity give the size.
 *
 * Threads: every function may be called from several threads at once,
 * including on one enclave, except mesatee_enclave_close, which must not race
 * with other calls on the same enclave.
 */
#ifndef MESATEE_H
#define MESATEE_H

#ifndef MESATEE_CDEF
#include <stddef.h>
#include <stdint.h>
#endif

#include "mesatee_types.h"

#ifndef MESATEE_CDEF
#if defined(_WIN32)
#define MESATEE_API __declspec(dllimport)
#else
#define MESATEE_API __attribute__((visibility("default")))
#endif
#ifdef __cplusplus
extern "C" {
#endif
#else
#define MESATEE_API
#endif

typedef struct mesatee_enclave mesatee_enclave;

/* A library-allocated byte buffer; free with mesatee_buffer_free. */
typedef struct mesatee_buffer {
    uint8_t* data;
    size_t size;
} mesatee_buffer;

/* A borrowed byte range. */
typedef struct mesatee_bytes {
    const uint8_t* data;
    size_t size;
} mesatee_bytes;

typedef struct mesatee_enclave_config {
    const char* image_path;     /* the enclave image (required) */
    const char* signature_path; /* NULL: image_path + ".sig" */
    const char* platform_dir;   /* NULL: $MESATEE_HOME, else the user's data folder */
    const uint8_t* sealed_state; /* NULL/0: a new enclave identity (fresh keys) */
    size_t sealed_state_size;
} mesatee_enclave_config;

typedef struct mesatee_identity {
    uint8_t mrenclave[32];
    uint8_t mrsigner[32];
    uint16_t product_id;
    uint16_t security_version;
    uint8_t debug;
    uint8_t platform; /* mesatee_platform_kind */
} mesatee_identity;

/* What evidence must show. Name mrenclave, or mrsigner with product_id, or all. */
typedef struct mesatee_attestation_policy {
    const uint8_t* mrenclave; /* 32 bytes or NULL */
    const uint8_t* mrsigner;  /* 32 bytes or NULL */
    int has_product_id;
    uint16_t product_id;
    uint16_t min_security_version;
    int allow_debug;
    int allow_software;
    const mesatee_bytes* trusted_roots; /* DER root certificates */
    size_t trusted_root_count;
} mesatee_attestation_policy;

typedef struct mesatee_verified_claims {
    mesatee_identity identity;
    uint8_t hpke_public_key[32];
    uint8_t signing_public_key[32];
    uint8_t nonce[64];
    size_t nonce_size;
} mesatee_verified_claims;

/* Loads and verifies the image against its signature file, opens the platform
 * and initializes the enclave (fresh keys, or those in sealed_state). */
MESATEE_API mesatee_status mesatee_enclave_open(const mesatee_enclave_config* config, mesatee_enclave** out);
MESATEE_API void mesatee_enclave_close(mesatee_enclave* enclave);

MESATEE_API mesatee_status mesatee_enclave_identity(const mesatee_enclave* enclave, mesatee_identity* out);
MESATEE_API mesatee_status mesatee_enclave_public_keys(mesatee_enclave* enclave, uint8_t hpke_public_key[32],
                                                       uint8_t signing_public_key[32]);
/* The enclave's keys sealed to its product: store it, pass it back as sealed_state. */
MESATEE_API mesatee_status mesatee_enclave_sealed_state(mesatee_enclave* enclave, mesatee_buffer* out);
/* Evidence binding the enclave's public keys and nonce (at most 64 bytes; may be empty). */
MESATEE_API mesatee_status mesatee_enclave_evidence(mesatee_enclave* enclave, const uint8_t* nonce, size_t nonce_size,
                                                    mesatee_buffer* out);

MESATEE_API size_t mesatee_sealed_size(size_t plaintext_size);
/* The plaintext size a blob of blob_size bytes opens to (0 if it is too short). */
MESATEE_API size_t mesatee_unsealed_capacity(size_t blob_size);
MESATEE_API mesatee_status mesatee_enclave_seal(mesatee_enclave* enclave, mesatee_seal_policy policy,
                                                const uint8_t* plaintext, size_t plaintext_size, const uint8_t* aad,
                                                size_t aad_size, uint8_t* out, size_t out_capacity, size_t* out_size);
/* On failure nothing of the plaintext is written to out. */
MESATEE_API mesatee_status mesatee_enclave_unseal(mesatee_enclave* enclave, const uint8_t* blob, size_t blob_size,
                                                  const uint8_t* aad, size_t aad_size, uint8_t* out,
                                                  size_t out_capacity, size_t* out_size);
/* Runs a task: invocation and result are canonical msgpack (docs/formats.md,
 * "Invocation" and "Result"). A refused task returns its status (70-80) and
 * no result. */
MESATEE_API mesatee_status mesatee_enclave_invoke(mesatee_enclave* enclave, const uint8_t* invocation,
                                                  size_t invocation_size, mesatee_buffer* result);
/* The built-in functions' declarations, canonical msgpack. */
MESATEE_API mesatee_status mesatee_enclave_functions(mesatee_enclave* enclave, mesatee_buffer* out);

/* Crosses the boundary and back, doing nothing. */
MESATEE_API mesatee_status mesatee_enclave_ping(mesatee_enclave* enclave);

/* Verifies evidence against a policy (docs/formats.md gives the order of the
 * checks). nonce NULL: any nonce is accepted; otherwise it must match exactly.
 * at_time: the Unix time at which certificates must be valid; 0 means now. */
MESATEE_API mesatee_status mesatee_verify_evidence(const uint8_t* evidence, size_t evidence_size, const uint8_t* nonce,
                                                   size_t nonce_size, const mesatee_attestation_policy* policy,
                                                   int64_t at_time, mesatee_verified_claims* out);

/* The platform's root certificate (DER), to give to verifiers; creates the platform folder on first use. */
MESATEE_API mesatee_status mesatee_platform_root_certificate(const char* platform_dir, mesatee_buffer* out);

MESATEE_API const char* mesatee_last_error_message(void);
MESATEE_API const char* mesatee_status_name(mesatee_status status);
MESATEE_API void mesatee_buffer_free(mesatee_buffer* buffer);

#ifndef MESATEE_CDEF
#ifdef __cplusplus
}
#endif
#endif

#endif
