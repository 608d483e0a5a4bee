// Sealing (DESIGN §4, format in docs/formats.md): data only this enclave
// (unique) or its product line (product) can open, on this platform.
#pragma once

#include "common/bytes.hpp"

namespace mesatee::sealing {

constexpr size_t kHeaderSize = 52;
constexpr size_t kOverhead = MESATEE_SEAL_OVERHEAD;

// Who a blob is for. Each purpose's label is authenticated with the blob, so
// the host, which may seal and unseal its own data through the enclave, can
// never open (or forge) the enclave's own state: they are different domains.
enum class Purpose { EnclaveState, HostData };

// out must hold plaintext.size + kOverhead bytes.
void seal(Purpose purpose, mesatee_seal_policy policy, ByteView plaintext, ByteView aad, uint8_t* out);
// out must hold blob.size - kOverhead bytes; returns the plaintext size, throws on any defect.
size_t unseal(Purpose purpose, ByteView blob, ByteView aad, uint8_t* out);
// The security version a well-formed blob was sealed at.
uint16_t blob_security_version(ByteView blob);

}  // namespace mesatee::sealing
