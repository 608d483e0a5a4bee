// The software platform's signed report and the ECDSA/X.509 pieces around it
// (docs/formats.md, "Software platform evidence"), used by the platform that
// signs reports and by the verifier that checks them.
#pragma once

#include "common/openssl.hpp"

namespace mesatee::host {

constexpr size_t kReportSize = 140;
constexpr size_t kRawSignatureSize = 64;

struct Report {
    mesatee_platform_kind platform = MESATEE_PLATFORM_SOFTWARE;
    bool debug = false;
    Bytes mrenclave, mrsigner;
    uint16_t product_id = 0;
    uint16_t security_version = 0;
    Bytes report_data;

    Bytes encode() const;
    static Report parse(ByteView bytes);  // throws EVIDENCE_MALFORMED
};

// ECDSA P-256 over SHA-256(message), as raw r ‖ s.
Bytes ecdsa_p256_sign(EVP_PKEY* key, ByteView message);
bool ecdsa_p256_verify(EVP_PKEY* key, ByteView message, ByteView raw_signature);

// A DER certificate, strictly (no trailing bytes); null when it does not parse.
X509Ptr parse_certificate(ByteView der);

}  // namespace mesatee::host
