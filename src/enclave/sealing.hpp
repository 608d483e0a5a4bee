// Sealing (DESIGN §4, format in docs/formats.md): data only this enclave
// (unique) or its product line (product) can open, on this platform.
#pragma once

#include "common/bytes.hpp"

namespace mesatee::sealing {

constexpr size_t kHeaderSize = 52;
constexpr size_t kOverhead = MESATEE_SEAL_OVERHEAD;

// out must hold plaintext.size + kOverhead bytes.
void seal(mesatee_seal_policy policy, ByteView plaintext, ByteView aad, uint8_t* out);
// out must hold blob.size - kOverhead bytes; returns the plaintext size, throws on any defect.
size_t unseal(ByteView blob, ByteView aad, uint8_t* out);
// The security version a well-formed blob was sealed at.
uint16_t blob_security_version(ByteView blob);

}  // namespace mesatee::sealing
