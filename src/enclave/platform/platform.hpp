// What trusted code asks of the platform it runs on (DESIGN §3): its measured
// identity, a seal key, and evidence over report data. One implementation per
// platform: software.cpp here; Open Enclave's runtime on SGX.
#pragma once

#include <cstdint>

#include "common/openssl.hpp"

namespace mesatee {

struct EnclaveIdentity {
    Bytes mrenclave;
    Bytes mrsigner;
    uint16_t product_id = 0;
    uint16_t security_version = 0;
    bool debug = false;
    mesatee_platform_kind kind = MESATEE_PLATFORM_SOFTWARE;
};

class EnclaveState;

namespace platform {

const EnclaveIdentity& identity();
// Derives the seal key for this enclave; throws for a version above its own.
void seal_key(mesatee_seal_policy policy, ByteView key_id, uint16_t security_version, SecretBytes& key);
Bytes evidence(ByteView report_data);
// The state of the enclave instance serving the current ecall.
EnclaveState& state();

}  // namespace platform
}  // namespace mesatee
