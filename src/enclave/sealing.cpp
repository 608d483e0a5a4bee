#include "sealing.hpp"

#include <string>

#include "crypto.hpp"
#include "platform/platform.hpp"

namespace mesatee::sealing {
namespace {

constexpr char kMagic[] = "MTSB";
constexpr uint8_t kVersion = 1;

struct Header {
    mesatee_seal_policy policy;
    uint16_t security_version;
    ByteView key_id;
    ByteView iv;
    ByteView ciphertext;
    ByteView tag;
};

// The authenticated context after the header: purpose label ‖ 0x00 ‖ the caller's AAD.
Bytes context(Purpose purpose, ByteView aad) {
    Bytes out;
    Writer(out).text(purpose == Purpose::EnclaveState ? "mesatee/enclave-state/v1" : "mesatee/host-data/v1").u8(0)
        .bytes(aad);
    return out;
}

Header parse(ByteView blob) {
    Reader r(blob, "sealed blob");
    r.expect(literal(kMagic), "magic");
    if (uint8_t v = r.u8("version"); v != kVersion) r.reject("unsupported version " + std::to_string(v));
    uint8_t policy = r.u8("policy");
    if (policy != MESATEE_SEAL_UNIQUE && policy != MESATEE_SEAL_PRODUCT)
        r.reject("unknown policy " + std::to_string(policy));
    Header h{static_cast<mesatee_seal_policy>(policy), r.u16("security version"), r.take(32, "key id"),
             r.take(crypto::kGcmIvSize, "iv"), {}, {}};
    if (r.remaining() < crypto::kGcmTagSize) r.take(crypto::kGcmTagSize, "tag");
    h.ciphertext = r.take(r.remaining() - crypto::kGcmTagSize, "ciphertext");
    h.tag = r.take(crypto::kGcmTagSize, "tag");
    return h;
}

}  // namespace

void seal(Purpose purpose, mesatee_seal_policy policy, ByteView plaintext, ByteView aad, uint8_t* out) {
    if (policy != MESATEE_SEAL_UNIQUE && policy != MESATEE_SEAL_PRODUCT)
        fail(MESATEE_ERROR_INVALID_ARGUMENT, "unknown seal policy " + std::to_string(policy));
    uint16_t version = platform::identity().security_version;
    // The header is written in place; key id and IV come from one call to the RNG.
    std::memcpy(out, kMagic, 4);
    out[4] = kVersion;
    out[5] = static_cast<uint8_t>(policy);
    out[6] = static_cast<uint8_t>(version);
    out[7] = static_cast<uint8_t>(version >> 8);
    random_bytes(out + 8, 32 + crypto::kGcmIvSize);
    ByteView header(out, kHeaderSize), key_id(out + 8, 32), iv(out + 40, crypto::kGcmIvSize);
    SecretBytes key(32);
    platform::seal_key(policy, key_id, version, key);
    crypto::aes_gcm_encrypt(key.view(), iv, header, context(purpose, aad), plaintext, out + kHeaderSize);
}

uint16_t blob_security_version(ByteView blob) { return parse(blob).security_version; }

size_t unseal(Purpose purpose, ByteView blob, ByteView aad, uint8_t* out) {
    Header h = parse(blob);
    uint16_t own = platform::identity().security_version;
    if (h.security_version > own)
        fail(MESATEE_ERROR_SEAL_VERSION, "sealed blob: sealed by security version " +
                                             std::to_string(h.security_version) + ", newer than this enclave's " +
                                             std::to_string(own));
    SecretBytes key(32);
    platform::seal_key(h.policy, h.key_id, h.security_version, key);
    if (!crypto::aes_gcm_decrypt(key.view(), h.iv, ByteView(blob.data, kHeaderSize), context(purpose, aad), h.ciphertext,
                                 h.tag, out))
        fail(MESATEE_ERROR_UNSEAL_FAILED,
             "sealed blob: authentication failed (tampered blob, wrong AAD, or sealed by another enclave, "
             "product or platform)");
    return h.ciphertext.size;
}

}  // namespace mesatee::sealing
