// The task manifest (docs/formats.md, "Manifest"), parsed strictly inside the
// enclave from its canonical encoding: what the participants approved.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "common/openssl.hpp"
#include "msgpack.hpp"

namespace mesatee {

struct Participant {
    Bytes id;  // SHA-256 of the signing key
    std::string id_hex;
    Bytes signing_key;
    Bytes hpke_key;
};

struct InputSlot {
    std::string name;
    Bytes owner;
    Bytes dataset_id;
    std::string format;  // mesatee-v1, teaclave-aes-gcm-128, teaclave-aes-gcm-256
};

struct OutputSlot {
    std::string name;
    std::vector<Bytes> owners;
};

struct EnclaveRequirement {
    std::optional<Bytes> mrenclave;
    std::optional<Bytes> mrsigner;
    uint16_t product_id = 0;
    uint16_t min_security_version = 0;
};

struct Manifest {
    Bytes hash;
    Bytes task_id;
    Bytes creator;
    std::string function_name;
    int64_t function_version = 0;
    std::optional<Bytes> function_owner;
    msgpack::Map arguments;
    std::vector<InputSlot> inputs;    // sorted by name
    std::vector<OutputSlot> outputs;  // sorted by name
    std::vector<Participant> participants;
    std::vector<EnclaveRequirement> enclaves;
    int64_t expires_at = 0;

    const Participant* participant(ByteView id) const;
};

// Throws MANIFEST_INVALID naming the field at fault.
Manifest parse_manifest(ByteView encoded);

}  // namespace mesatee
