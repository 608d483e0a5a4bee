// mesatee.h: every function turns exceptions into a status and keeps the
// message for mesatee_last_error_message on the calling thread.
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <memory>
#include <new>
#include <string>

#include "mesatee/mesatee.h"
#include "mesatee_u.h"
#include "platform/software_enclave.hpp"
#include "verifier.hpp"

using namespace mesatee;
using mesatee::host::SoftwareEnclave;
using mesatee::host::SoftwarePlatform;

struct mesatee_enclave {
    std::unique_ptr<SoftwareEnclave> bridge;
};

namespace {

thread_local std::string last_error;

template <typename Fn>
mesatee_status guarded(Fn&& fn) {
    try {
        fn();
        last_error.clear();
        return MESATEE_OK;
    } catch (const Error& e) {
        last_error = e.what();
        return e.status();
    } catch (const std::bad_alloc&) {
        last_error = "out of memory";
        return MESATEE_ERROR_OUT_OF_MEMORY;
    } catch (const std::exception& e) {
        last_error = std::string("internal error: ") + e.what();
        return MESATEE_ERROR_INTERNAL;
    } catch (...) {
        last_error = "internal error";
        return MESATEE_ERROR_INTERNAL;
    }
}

void require(bool ok, const char* what) {
    if (!ok) fail(MESATEE_ERROR_INVALID_ARGUMENT, what);
}

SoftwareEnclave& bridge_of(mesatee_enclave* e) {
    require(e != nullptr, "enclave is null");
    return *e->bridge;
}

// Runs a generated ecall proxy; a refusal carries the enclave's own message.
template <typename Proxy, typename... Args>
void ecall(mesatee_enclave* e, Proxy proxy, Args... args) {
    SoftwareEnclave& bridge = bridge_of(e);
    int ret = MESATEE_ERROR_INTERNAL;
    int status = proxy(&bridge, &ret, args...);
    if (status != MESATEE_OK)
        fail(static_cast<mesatee_status>(status), "the enclave boundary refused the call (" +
                                                      std::string(mesatee_status_name(static_cast<mesatee_status>(status))) + ")");
    if (ret == MESATEE_OK) return;
    char message[MESATEE_MAX_ERROR_MESSAGE] = "";
    int ignored = 0;
    if (ecall_last_error(&bridge, &ignored, message, sizeof message) != MESATEE_OK || !message[0])
        std::strcpy(message, "the enclave refused the call");
    fail(static_cast<mesatee_status>(ret), message);
}

void set_buffer(mesatee_buffer* out, const Bytes& bytes) {
    out->data = static_cast<uint8_t*>(std::malloc(bytes.empty() ? 1 : bytes.size()));
    if (!out->data) throw std::bad_alloc();
    if (!bytes.empty()) std::memcpy(out->data, bytes.data(), bytes.size());
    out->size = bytes.size();
}

void clear_buffer(mesatee_buffer* out) {
    require(out != nullptr, "output buffer is null");
    out->data = nullptr;
    out->size = 0;
}

void require_bytes(const uint8_t* p, size_t n, const char* what) {
    if (n && !p) fail(MESATEE_ERROR_INVALID_ARGUMENT, std::string(what) + " is null but has a size");
}

}  // namespace

extern "C" {

mesatee_status mesatee_enclave_open(const mesatee_enclave_config* config, mesatee_enclave** out) {
    return guarded([&] {
        require(config && out, "config and out are required");
        *out = nullptr;
        require(config->image_path && *config->image_path, "image_path is required");
        require_bytes(config->sealed_state, config->sealed_state_size, "sealed_state");
        std::string image = config->image_path;
        std::string signature = config->signature_path ? config->signature_path : image + ".sig";
        auto platform = SoftwarePlatform::open(config->platform_dir);
        auto enclave = std::make_unique<mesatee_enclave>();
        enclave->bridge = SoftwareEnclave::load(image, signature, platform);
        ecall(enclave.get(), ecall_initialize, config->sealed_state, config->sealed_state_size);
        *out = enclave.release();
    });
}

void mesatee_enclave_close(mesatee_enclave* enclave) { delete enclave; }

mesatee_status mesatee_enclave_identity(const mesatee_enclave* e, mesatee_identity* out) {
    return guarded([&] {
        require(e && out, "enclave and out are required");
        const mesatee_sw_identity& id = e->bridge->identity();
        std::memcpy(out->mrenclave, id.mrenclave, 32);
        std::memcpy(out->mrsigner, id.mrsigner, 32);
        out->product_id = id.product_id;
        out->security_version = id.security_version;
        out->debug = id.debug;
        out->platform = MESATEE_PLATFORM_SOFTWARE;
    });
}

mesatee_status mesatee_enclave_public_keys(mesatee_enclave* e, uint8_t hpke[32], uint8_t signing[32]) {
    return guarded([&] {
        require(hpke && signing, "output keys are required");
        ecall(e, ecall_public_keys, hpke, signing);
    });
}

mesatee_status mesatee_enclave_sealed_state(mesatee_enclave* e, mesatee_buffer* out) {
    return guarded([&] {
        clear_buffer(out);
        Bytes state(256);
        size_t size = 0;
        ecall(e, ecall_sealed_state, state.data(), state.size(), &size);
        state.resize(size);
        set_buffer(out, state);
    });
}

mesatee_status mesatee_enclave_evidence(mesatee_enclave* e, const uint8_t* nonce, size_t nonce_size,
                                        mesatee_buffer* out) {
    return guarded([&] {
        clear_buffer(out);
        require_bytes(nonce, nonce_size, "nonce");
        require(nonce_size <= MESATEE_MAX_NONCE_SIZE, "nonce is longer than 64 bytes");
        Bytes evidence(MESATEE_MAX_EVIDENCE_SIZE);
        size_t size = 0;
        ecall(e, ecall_evidence, nonce, nonce_size, evidence.data(), evidence.size(), &size);
        evidence.resize(size);
        set_buffer(out, evidence);
    });
}

size_t mesatee_sealed_size(size_t plaintext_size) { return plaintext_size + MESATEE_SEAL_OVERHEAD; }

size_t mesatee_unsealed_capacity(size_t blob_size) {
    return blob_size > MESATEE_SEAL_OVERHEAD ? blob_size - MESATEE_SEAL_OVERHEAD : 0;
}

mesatee_status mesatee_enclave_seal(mesatee_enclave* e, mesatee_seal_policy policy, const uint8_t* plaintext,
                                    size_t plaintext_size, const uint8_t* aad, size_t aad_size, uint8_t* out,
                                    size_t out_capacity, size_t* out_size) {
    return guarded([&] {
        require_bytes(plaintext, plaintext_size, "plaintext");
        require_bytes(aad, aad_size, "aad");
        require(out_size != nullptr, "out_size is required");
        require(plaintext_size <= MESATEE_MAX_BOUNDARY_BUFFER - MESATEE_SEAL_OVERHEAD,
                "plaintext is larger than one enclave call accepts (1 GiB)");
        *out_size = mesatee_sealed_size(plaintext_size);
        if (out_capacity < *out_size) fail(MESATEE_ERROR_BUFFER_TOO_SMALL, "output buffer is too small");
        require(out != nullptr, "out is null");
        ecall(e, ecall_seal, static_cast<uint32_t>(policy), plaintext, plaintext_size, aad, aad_size, out,
              *out_size, out_size);
    });
}

mesatee_status mesatee_enclave_unseal(mesatee_enclave* e, const uint8_t* blob, size_t blob_size, const uint8_t* aad,
                                      size_t aad_size, uint8_t* out, size_t out_capacity, size_t* out_size) {
    return guarded([&] {
        require_bytes(blob, blob_size, "blob");
        require_bytes(aad, aad_size, "aad");
        require(out_size != nullptr, "out_size is required");
        size_t needed = mesatee_unsealed_capacity(blob_size);
        *out_size = needed;
        if (out_capacity < needed) fail(MESATEE_ERROR_BUFFER_TOO_SMALL, "output buffer is too small");
        require(out != nullptr || needed == 0, "out is null");
        ecall(e, ecall_unseal, blob, blob_size, aad, aad_size, out, needed, out_size);
    });
}

mesatee_status mesatee_enclave_invoke(mesatee_enclave* e, const uint8_t* invocation, size_t invocation_size,
                                      mesatee_buffer* result) {
    return guarded([&] {
        clear_buffer(result);
        require_bytes(invocation, invocation_size, "invocation");
        size_t size = 0;
        ecall(e, ecall_invoke, invocation, invocation_size, &size);
        Bytes out(size);
        ecall(e, ecall_take_result, out.data(), out.size(), &size);
        out.resize(size);
        set_buffer(result, out);
    });
}

mesatee_status mesatee_enclave_functions(mesatee_enclave* e, mesatee_buffer* out) {
    return guarded([&] {
        clear_buffer(out);
        size_t size = 0;
        Bytes declarations(1 << 16);
        ecall(e, ecall_functions, declarations.data(), declarations.size(), &size);
        declarations.resize(size);
        set_buffer(out, declarations);
    });
}

mesatee_status mesatee_enclave_ping(mesatee_enclave* e) {
    // The hot path of the call benchmark: no allocation, no exception unless it fails.
    if (!e) return guarded([] { require(false, "enclave is null"); });
    int ret = 0;
    int status = ecall_ping(e->bridge.get(), &ret);
    return static_cast<mesatee_status>(status != MESATEE_OK ? status : ret);
}

mesatee_status mesatee_verify_evidence(const uint8_t* evidence, size_t evidence_size, const uint8_t* nonce,
                                       size_t nonce_size, const mesatee_attestation_policy* policy, int64_t at_time,
                                       mesatee_verified_claims* out) {
    return guarded([&] {
        require(policy && out, "policy and out are required");
        require_bytes(evidence, evidence_size, "evidence");
        require_bytes(nonce, nonce_size, "nonce");
        require(nonce_size <= MESATEE_MAX_NONCE_SIZE, "nonce is longer than 64 bytes");
        require(policy->mrenclave || (policy->mrsigner && policy->has_product_id),
                "the policy must name mrenclave, or mrsigner with product_id");
        require(!policy->mrsigner == !policy->has_product_id || policy->mrenclave,
                "mrsigner and product_id go together");
        require(policy->trusted_roots || policy->trusted_root_count == 0, "trusted_roots is null");
        ByteView expected(nonce, nonce_size);
        host::verify_evidence(ByteView(evidence, evidence_size), nonce ? &expected : nullptr, *policy,
                              at_time ? at_time : static_cast<int64_t>(std::time(nullptr)), *out);
    });
}

mesatee_status mesatee_platform_root_certificate(const char* platform_dir, mesatee_buffer* out) {
    return guarded([&] {
        clear_buffer(out);
        set_buffer(out, SoftwarePlatform::open(platform_dir)->root_certificate());
    });
}

const char* mesatee_last_error_message(void) { return last_error.c_str(); }

const char* mesatee_status_name(mesatee_status status) {
    switch (status) {
#define NAME(x) \
    case MESATEE_##x: return #x;
        NAME(OK)
        NAME(ERROR_INVALID_ARGUMENT) NAME(ERROR_BUFFER_TOO_SMALL) NAME(ERROR_OUT_OF_MEMORY) NAME(ERROR_INTERNAL)
        NAME(ERROR_CRYPTO) NAME(ERROR_BOUNDARY) NAME(ERROR_FORMAT) NAME(ERROR_PLATFORM) NAME(ERROR_IMAGE_LOAD)
        NAME(ERROR_IMAGE_MODIFIED) NAME(ERROR_SIGNATURE_INVALID) NAME(ERROR_SIGNATURE_MISMATCH)
        NAME(ERROR_UNSEAL_FAILED) NAME(ERROR_SEAL_VERSION) NAME(ERROR_EVIDENCE_MALFORMED)
        NAME(ERROR_PLATFORM_NOT_ALLOWED) NAME(ERROR_UNTRUSTED_ROOT) NAME(ERROR_CERTIFICATE_INVALID)
        NAME(ERROR_REPORT_SIGNATURE_INVALID) NAME(ERROR_CLAIMS_MISMATCH) NAME(ERROR_NONCE_MISMATCH)
        NAME(ERROR_MRENCLAVE_MISMATCH) NAME(ERROR_MRSIGNER_MISMATCH) NAME(ERROR_PRODUCT_ID_MISMATCH)
        NAME(ERROR_SECURITY_VERSION_TOO_LOW) NAME(ERROR_DEBUG_NOT_ALLOWED) NAME(ERROR_UNSUPPORTED_PLATFORM)
        NAME(ERROR_MANIFEST_INVALID) NAME(ERROR_MANIFEST_EXPIRED) NAME(ERROR_ENCLAVE_NOT_ACCEPTED)
        NAME(ERROR_APPROVAL_MISSING) NAME(ERROR_APPROVAL_INVALID) NAME(ERROR_GRANT_INVALID) NAME(ERROR_INPUT_MISMATCH)
        NAME(ERROR_INPUT_INVALID) NAME(ERROR_FUNCTION_UNKNOWN) NAME(ERROR_ARGUMENT_INVALID) NAME(ERROR_FUNCTION_FAILED)
#undef NAME
    }
    return "UNKNOWN_STATUS";
}

void mesatee_buffer_free(mesatee_buffer* buffer) {
    if (!buffer) return;
    if (buffer->data) OPENSSL_cleanse(buffer->data, buffer->size);
    std::free(buffer->data);
    buffer->data = nullptr;
    buffer->size = 0;
}

}  // extern "C"
