// The ecalls of edl/mesatee.edl. The generated bridge has already copied every
// buffer into enclave memory; each ecall turns exceptions into a status and
// keeps the message for ecall_last_error.
#include <cstring>
#include <new>
#include <string>

#include "enclave_state.hpp"
#include "mesatee_t.h"
#include "platform/platform.hpp"
#include "functions/registry.hpp"
#include "sealing.hpp"
#include "task.hpp"

namespace mesatee {
namespace {

thread_local std::string last_error;

template <typename Fn>
int guarded(Fn&& fn) {
    try {
        fn();
        return MESATEE_OK;
    } catch (const Error& e) {
        last_error = e.what();
        return e.status();
    } catch (const std::bad_alloc&) {
        last_error = "out of memory inside the enclave";
        return MESATEE_ERROR_OUT_OF_MEMORY;
    } catch (...) {
        last_error = "internal error inside the enclave";
        return MESATEE_ERROR_INTERNAL;
    }
}

EnclaveState& ready_state() {
    EnclaveState& s = platform::state();
    if (!s.initialized()) fail(MESATEE_ERROR_INVALID_ARGUMENT, "the enclave is not initialized");
    return s;
}

// Copies a result out, or says how much room it needs.
void emit(const Bytes& result, uint8_t* out, size_t capacity, size_t* out_size) {
    *out_size = result.size();
    if (result.size() > capacity)
        fail(MESATEE_ERROR_BUFFER_TOO_SMALL, "output needs " + std::to_string(result.size()) + " bytes");
    if (!result.empty()) std::memcpy(out, result.data(), result.size());
}

}  // namespace
}  // namespace mesatee

using namespace mesatee;

int ecall_initialize(const uint8_t* sealed_state, size_t sealed_state_size) {
    return guarded([&] { platform::state().initialize(ByteView(sealed_state, sealed_state_size)); });
}

int ecall_sealed_state(uint8_t* out, size_t capacity, size_t* out_size) {
    return guarded([&] { emit(ready_state().sealed_state(), out, capacity, out_size); });
}

int ecall_public_keys(uint8_t* hpke_public_key, uint8_t* signing_public_key) {
    return guarded([&] {
        const EnclaveState& s = ready_state();
        std::memcpy(hpke_public_key, s.hpke_public_key().data(), 32);
        std::memcpy(signing_public_key, s.signing_public_key().data(), 32);
    });
}

int ecall_evidence(const uint8_t* nonce, size_t nonce_size, uint8_t* out, size_t capacity, size_t* out_size) {
    return guarded([&] { emit(ready_state().evidence(ByteView(nonce, nonce_size)), out, capacity, out_size); });
}

int ecall_seal(uint32_t policy, const uint8_t* plaintext, size_t plaintext_size, const uint8_t* aad,
               size_t aad_size, uint8_t* out, size_t capacity, size_t* out_size) {
    return guarded([&] {
        ready_state();
        if (plaintext_size > MESATEE_MAX_BOUNDARY_BUFFER - sealing::kOverhead)
            fail(MESATEE_ERROR_INVALID_ARGUMENT, "plaintext too large to seal");
        *out_size = plaintext_size + sealing::kOverhead;
        if (capacity < *out_size) fail(MESATEE_ERROR_BUFFER_TOO_SMALL, "sealed blob needs more room");
        sealing::seal(sealing::Purpose::HostData, static_cast<mesatee_seal_policy>(policy), ByteView(plaintext, plaintext_size),
                      ByteView(aad, aad_size), out);
    });
}

int ecall_unseal(const uint8_t* blob, size_t blob_size, const uint8_t* aad, size_t aad_size, uint8_t* out,
                 size_t capacity, size_t* out_size) {
    return guarded([&] {
        ready_state();
        size_t needed = blob_size >= sealing::kOverhead ? blob_size - sealing::kOverhead : 0;
        *out_size = needed;
        if (capacity < needed) fail(MESATEE_ERROR_BUFFER_TOO_SMALL, "plaintext needs more room");
        *out_size = sealing::unseal(sealing::Purpose::HostData, ByteView(blob, blob_size), ByteView(aad, aad_size), out);
    });
}

namespace mesatee {
namespace {
thread_local Bytes pending_result;
}
}  // namespace mesatee

int ecall_invoke(const uint8_t* invocation, size_t invocation_size, size_t* result_size) {
    return guarded([&] {
        pending_result.clear();
        pending_result = invoke(ready_state(), ByteView(invocation, invocation_size));
        *result_size = pending_result.size();
    });
}

int ecall_take_result(uint8_t* out, size_t capacity, size_t* out_size) {
    return guarded([&] {
        emit(pending_result, out, capacity, out_size);
        Bytes().swap(pending_result);
    });
}

int ecall_functions(uint8_t* out, size_t capacity, size_t* out_size) {
    return guarded([&] { emit(functions::declarations(), out, capacity, out_size); });
}

int ecall_last_error(char* message, size_t capacity) {
    if (capacity == 0) return MESATEE_ERROR_BUFFER_TOO_SMALL;
    size_t n = std::min(capacity - 1, last_error.size());
    std::memcpy(message, last_error.data(), n);
    message[n] = '\0';
    return MESATEE_OK;
}

int ecall_ping(void) { return MESATEE_OK; }
