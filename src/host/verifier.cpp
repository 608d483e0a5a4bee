#include "verifier.hpp"

#include <openssl/x509v3.h>

#include <cstring>
#include <map>
#include <memory>
#include <mutex>

#include "report.hpp"

namespace mesatee::host {
namespace {

[[noreturn]] void refuse(mesatee_status status, const std::string& why) { fail(status, "evidence refused: " + why); }

// A root and an attestation certificate it was checked to have issued.
struct IssuedPair {
    X509Ptr root, cert;
};

IssuedPair check_issued(ByteView root_der, ByteView cert_der) {
    IssuedPair pair{parse_certificate(root_der), parse_certificate(cert_der)};
    if (!pair.root || !pair.cert) refuse(MESATEE_ERROR_CERTIFICATE_INVALID, "a certificate does not parse");
    EVP_PKEY* root_key = X509_get0_pubkey(pair.root.get());
    if (X509_NAME_cmp(X509_get_issuer_name(pair.cert.get()), X509_get_subject_name(pair.root.get())) != 0)
        refuse(MESATEE_ERROR_CERTIFICATE_INVALID, "the attestation certificate was not issued by the root");
    // X509_verify also refuses an outer signature algorithm that differs from the signed one.
    if (!root_key || X509_verify(pair.cert.get(), root_key) != 1) {
        ERR_clear_error();
        refuse(MESATEE_ERROR_CERTIFICATE_INVALID, "the attestation certificate's signature does not verify");
    }
    return pair;
}

// Parsing and checking a certificate costs several ECDSA verifications in
// OpenSSL 3.0; a platform's pair is the same in all its evidence, so pairs
// that passed are kept, keyed by the digest of their exact bytes.
class IssuedPairCache {
public:
    std::shared_ptr<const IssuedPair> get(ByteView root_der, ByteView cert_der) {
        Bytes key = sha256(root_der);
        Bytes cert_digest = sha256(cert_der);
        key.insert(key.end(), cert_digest.begin(), cert_digest.end());
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (auto it = pairs_.find(key); it != pairs_.end()) return it->second;
        }
        auto pair = std::make_shared<const IssuedPair>(check_issued(root_der, cert_der));
        std::lock_guard<std::mutex> lock(mutex_);
        if (pairs_.size() >= kMaxPairs) pairs_.erase(pairs_.begin());
        pairs_.emplace(std::move(key), pair);
        return pair;
    }

private:
    static constexpr size_t kMaxPairs = 64;
    std::mutex mutex_;
    std::map<Bytes, std::shared_ptr<const IssuedPair>> pairs_;
};

void check_validity(X509* cert, int64_t at_time) {
    time_t t = static_cast<time_t>(at_time);
    // Both ends inclusive, as in the Python verifier; 0 means a time that does not parse.
    int after_start = X509_cmp_time(X509_get0_notBefore(cert), &t), before_end = X509_cmp_time(X509_get0_notAfter(cert), &t);
    if (after_start == 0 || before_end == 0 || after_start > 0 || before_end < 0)
        refuse(MESATEE_ERROR_CERTIFICATE_INVALID, "the attestation certificate is outside its validity period");
    EVP_PKEY* key = X509_get0_pubkey(cert);
    char group[64] = {};
    size_t n = 0;
    if (!key || EVP_PKEY_get_base_id(key) != EVP_PKEY_EC ||
        EVP_PKEY_get_group_name(key, group, sizeof group, &n) != 1 || std::strcmp(group, "prime256v1") != 0) {
        ERR_clear_error();
        refuse(MESATEE_ERROR_CERTIFICATE_INVALID, "the attestation key is not a P-256 key");
    }
}

}  // namespace

void verify_evidence(ByteView evidence, const ByteView* nonce, const mesatee_attestation_policy& policy,
                     int64_t at_time, mesatee_verified_claims& out) {
    // 1. framing
    if (evidence.size > MESATEE_MAX_EVIDENCE_SIZE)
        refuse(MESATEE_ERROR_EVIDENCE_MALFORMED, "evidence is larger than " + std::to_string(MESATEE_MAX_EVIDENCE_SIZE) + " bytes");
    Reader r(evidence, "evidence", MESATEE_ERROR_EVIDENCE_MALFORMED);
    r.expect(literal("MTEV"), "magic");
    if (r.u16("version") != 1) r.reject("unsupported version");
    uint8_t platform = r.u8("platform");
    if (platform != MESATEE_PLATFORM_SOFTWARE && platform != MESATEE_PLATFORM_SGX)
        r.reject("unknown platform " + std::to_string(platform));
    if (r.u8("reserved") != 0) r.reject("reserved byte is set");
    size_t claims_start = r.offset();
    ByteView hpke_key = r.take(32, "hpke public key");
    ByteView signing_key = r.take(32, "signing public key");
    uint8_t nonce_size = r.u8("nonce length");
    if (nonce_size > MESATEE_MAX_NONCE_SIZE) r.reject("nonce longer than 64 bytes");
    ByteView claimed_nonce = r.take(nonce_size, "nonce");
    ByteView claims(evidence.data + claims_start, r.offset() - claims_start);
    uint32_t platform_size = r.u32("platform evidence length");
    ByteView platform_evidence = r.take(platform_size, "platform evidence");
    r.expect_end();

    // 2. platform
    if (platform == MESATEE_PLATFORM_SGX)
        refuse(MESATEE_ERROR_UNSUPPORTED_PLATFORM, "SGX evidence cannot be verified by this build (no Open Enclave SDK)");
    Reader p(platform_evidence, "software platform evidence", MESATEE_ERROR_EVIDENCE_MALFORMED);
    Report report = Report::parse(p.take(kReportSize, "report"));
    ByteView report_bytes(platform_evidence.data, kReportSize);
    ByteView signature = p.take(kRawSignatureSize, "signature");
    uint16_t att_size = p.u16("attestation certificate length");
    if (att_size > 4096) p.reject("attestation certificate longer than 4096 bytes");
    ByteView att_der = p.take(att_size, "attestation certificate");
    uint16_t root_size = p.u16("root certificate length");
    if (root_size > 4096) p.reject("root certificate longer than 4096 bytes");
    ByteView root_der = p.take(root_size, "root certificate");
    p.expect_end();
    if (!policy.allow_software)
        refuse(MESATEE_ERROR_PLATFORM_NOT_ALLOWED,
               "it comes from the software platform, which has no hardware isolation (allow_software is off)");

    // 3. root
    bool trusted = false;
    for (size_t i = 0; i < policy.trusted_root_count && !trusted; ++i)
        trusted = ByteView(policy.trusted_roots[i].data, policy.trusted_roots[i].size) == root_der;
    if (!trusted)
        refuse(MESATEE_ERROR_UNTRUSTED_ROOT, "its root certificate (SHA-256 " + hex(sha256(root_der)) +
                                                 ") is not one of the policy's trusted roots");
    // 4. certificate
    static IssuedPairCache issued;
    std::shared_ptr<const IssuedPair> pair = issued.get(root_der, att_der);
    check_validity(pair->cert.get(), at_time);
    // 5. report signature
    if (!ecdsa_p256_verify(X509_get0_pubkey(pair->cert.get()), report_bytes, signature))
        refuse(MESATEE_ERROR_REPORT_SIGNATURE_INVALID, "the report's signature does not verify");
    // 6. claims
    Bytes expected = sha256(claims);
    expected.resize(MESATEE_REPORT_DATA_SIZE, 0);
    if (ByteView(expected) != ByteView(report.report_data))
        refuse(MESATEE_ERROR_CLAIMS_MISMATCH, "the report does not bind these public keys and nonce");
    // 7. nonce
    if (nonce && *nonce != claimed_nonce)
        refuse(MESATEE_ERROR_NONCE_MISMATCH, "it answers nonce " + hex(claimed_nonce) + ", not " + hex(*nonce));
    // 8. identity
    if (policy.mrenclave && ByteView(policy.mrenclave, 32) != ByteView(report.mrenclave))
        refuse(MESATEE_ERROR_MRENCLAVE_MISMATCH, "mrenclave is " + hex(report.mrenclave) + ", the policy expects " +
                                                     hex(ByteView(policy.mrenclave, 32)));
    if (policy.mrsigner && ByteView(policy.mrsigner, 32) != ByteView(report.mrsigner))
        refuse(MESATEE_ERROR_MRSIGNER_MISMATCH, "mrsigner is " + hex(report.mrsigner) + ", the policy expects " +
                                                    hex(ByteView(policy.mrsigner, 32)));
    if (policy.has_product_id && policy.product_id != report.product_id)
        refuse(MESATEE_ERROR_PRODUCT_ID_MISMATCH, "product id is " + std::to_string(report.product_id) +
                                                      ", the policy expects " + std::to_string(policy.product_id));
    if (report.security_version < policy.min_security_version)
        refuse(MESATEE_ERROR_SECURITY_VERSION_TOO_LOW,
               "security version " + std::to_string(report.security_version) + " is below the minimum " +
                   std::to_string(policy.min_security_version));
    if (report.debug && !policy.allow_debug)
        refuse(MESATEE_ERROR_DEBUG_NOT_ALLOWED, "it is a debug enclave (allow_debug is off)");

    std::memset(&out, 0, sizeof out);
    std::memcpy(out.identity.mrenclave, report.mrenclave.data(), 32);
    std::memcpy(out.identity.mrsigner, report.mrsigner.data(), 32);
    out.identity.product_id = report.product_id;
    out.identity.security_version = report.security_version;
    out.identity.debug = report.debug ? 1 : 0;
    out.identity.platform = MESATEE_PLATFORM_SOFTWARE;
    std::memcpy(out.hpke_public_key, hpke_key.data, 32);
    std::memcpy(out.signing_public_key, signing_key.data, 32);
    std::memcpy(out.nonce, claimed_nonce.data, claimed_nonce.size);
    out.nonce_size = claimed_nonce.size;
}

}  // namespace mesatee::host
