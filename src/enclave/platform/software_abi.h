/* The software platform's ABI: what the software "CPU" (the loader in
 * src/host/platform/) gives an enclave image, and the three entry points the
 * image exports. It stands where SGX's EREPORT/EGETKEY and Open Enclave's
 * runtime stand on hardware. The loader measured the image, so the identity
 * here is the platform's, not the enclave's own claim. */
#ifndef MESATEE_SOFTWARE_ABI_H
#define MESATEE_SOFTWARE_ABI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MESATEE_SW_ABI_VERSION 1u

typedef struct mesatee_sw_identity {
    uint8_t mrenclave[32];
    uint8_t mrsigner[32];
    uint16_t product_id;
    uint16_t security_version;
    uint8_t debug;
} mesatee_sw_identity;

typedef struct mesatee_sw_platform {
    uint32_t abi_version;
    void* context;
    mesatee_sw_identity identity;
    /* The 32-byte seal key for this enclave under a policy, key id and security
     * version (docs/formats.md); refused for a version above the enclave's own. */
    int (*seal_key)(void* context, uint32_t policy, const uint8_t key_id[32], uint16_t security_version,
                    uint8_t key[32]);
    /* Platform evidence (signed report and endorsements) over 64 bytes of report data. */
    int (*evidence)(void* context, const uint8_t report_data[64], uint8_t* out, size_t capacity,
                    size_t* out_size);
} mesatee_sw_platform;

/* Exported by the enclave image. */
typedef int (*mesatee_sw_create_fn)(const mesatee_sw_platform* platform, void** instance);
typedef int (*mesatee_sw_call_fn)(void* instance, uint32_t function_id, void* args, size_t args_size);
typedef void (*mesatee_sw_destroy_fn)(void* instance);

#define MESATEE_SW_CREATE_SYMBOL "mesatee_sw_enclave_create"
#define MESATEE_SW_CALL_SYMBOL "mesatee_sw_enclave_call"
#define MESATEE_SW_DESTROY_SYMBOL "mesatee_sw_enclave_destroy"

#ifdef __cplusplus
}
#endif
#endif
