// The software platform (DESIGN §3): stands in for the CPU. Its folder holds a
// seal root secret and an attestation key certified by the platform's own root
// CA; from them it derives seal keys and signs reports for enclaves it loaded.
#pragma once

#include <memory>
#include <string>

#include "common/openssl.hpp"
#include "platform/software_abi.h"

namespace mesatee::host {

class SoftwarePlatform {
public:
    // Opens the folder (explicit path, else $MESATEE_HOME, else the user's data
    // folder), creating it on first use.
    static std::shared_ptr<SoftwarePlatform> open(const char* folder);
    static std::string default_folder();

    const std::string& folder() const { return folder_; }
    const Bytes& root_certificate() const { return root_cert_; }

    // The seal key of docs/formats.md for an enclave of this identity.
    void seal_key(const mesatee_sw_identity& id, uint32_t policy, ByteView key_id, uint16_t security_version,
                  uint8_t key[32]) const;
    // Software platform evidence: signed report over report_data, and the certificates.
    Bytes evidence(const mesatee_sw_identity& id, ByteView report_data) const;

    ~SoftwarePlatform();

private:
    SoftwarePlatform() = default;
    void create_files() const;
    void load_files();

    std::string folder_;
    // HMAC keyed with HKDF-Extract(seal root): each seal key is one HKDF-Expand block.
    OsslPtr<EVP_MAC_CTX, EVP_MAC_CTX_free> seal_hmac_;
    PkeyPtr attestation_key_;
    Bytes attestation_cert_;
    Bytes root_cert_;
};

}  // namespace mesatee::host
