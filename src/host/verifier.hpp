// The C++ evidence verifier (docs/formats.md, "Verification order"); the pure
// Python one in mesatee.core.attestation checks the same things in the same order.
#pragma once

#include "common/bytes.hpp"
#include "mesatee/mesatee.h"

namespace mesatee::host {

// nonce: null when the caller expects none in particular; at_time: Unix time for certificate validity.
void verify_evidence(ByteView evidence, const ByteView* nonce, const mesatee_attestation_policy& policy,
                     int64_t at_time, mesatee_verified_claims& out);

}  // namespace mesatee::host
