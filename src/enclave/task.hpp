// Running a task (DESIGN §8, docs/formats.md "Invocation" and "Result"): every
// check that protects the participants' data is made here, from the signed
// manifest, whatever the host claims.
#pragma once

#include "common/bytes.hpp"

namespace mesatee {

class EnclaveState;

// The result's canonical encoding; a typed error and nothing else when any check fails.
Bytes invoke(const EnclaveState& state, ByteView invocation);

}  // namespace mesatee
