#include "enclave_state.hpp"

#include "crypto.hpp"
#include "platform/platform.hpp"
#include "sealing.hpp"

namespace mesatee {
namespace {

constexpr char kStateMagic[] = "MTKS";
constexpr uint8_t kStateVersion = 1;
constexpr size_t kStateSize = 4 + 1 + 32 + 32;

}  // namespace

void EnclaveState::initialize(ByteView sealed_state) {
    std::lock_guard<std::mutex> lock(init_mutex_);
    if (initialized_) fail(MESATEE_ERROR_INVALID_ARGUMENT, "the enclave is already initialized");
    if (sealed_state.size == 0) {
        random_bytes(hpke_private_.data(), 32);
        random_bytes(signing_seed_.data(), 32);
        seal_keys();
    } else {
        if (sealed_state.size != kStateSize + sealing::kOverhead)
            fail(MESATEE_ERROR_FORMAT, "enclave state: sealed blob has " + std::to_string(sealed_state.size) +
                                           " bytes, expected " + std::to_string(kStateSize + sealing::kOverhead));
        SecretBytes plain(kStateSize);
        sealing::unseal(sealing::Purpose::EnclaveState, sealed_state, {}, plain.data());
        Reader r(plain.view(), "enclave state");
        r.expect(literal(kStateMagic), "magic");
        if (r.u8("version") != kStateVersion) r.reject("unsupported version");
        std::memcpy(hpke_private_.data(), r.take(32, "hpke key").data, 32);
        std::memcpy(signing_seed_.data(), r.take(32, "signing key").data, 32);
        // State from an older version is re-sealed under ours, so a rollback cannot open it.
        if (sealing::blob_security_version(sealed_state) < platform::identity().security_version)
            seal_keys();
        else
            sealed_state_ = sealed_state.to_bytes();
    }
    hpke_key_ = crypto::raw_private_key(EVP_PKEY_X25519, hpke_private_.view());
    signing_key_ = crypto::raw_private_key(EVP_PKEY_ED25519, signing_seed_.view());
    hpke_public_ = crypto::raw_public_key(hpke_key_.get());
    signing_public_ = crypto::raw_public_key(signing_key_.get());
    initialized_.store(true, std::memory_order_release);
}

void EnclaveState::seal_keys() {
    SecretBytes plain(kStateSize);
    std::memcpy(plain.data(), kStateMagic, 4);
    plain.data()[4] = kStateVersion;
    std::memcpy(plain.data() + 5, hpke_private_.data(), 32);
    std::memcpy(plain.data() + 37, signing_seed_.data(), 32);
    sealed_state_.assign(kStateSize + sealing::kOverhead, 0);
    sealing::seal(sealing::Purpose::EnclaveState, MESATEE_SEAL_PRODUCT, plain.view(), {}, sealed_state_.data());
}

Bytes EnclaveState::sign(ByteView message) const { return crypto::ed25519_sign(signing_key_.get(), message); }

Bytes EnclaveState::evidence(ByteView nonce) const {
    if (nonce.size > MESATEE_MAX_NONCE_SIZE)
        fail(MESATEE_ERROR_INVALID_ARGUMENT, "nonce has " + std::to_string(nonce.size) + " bytes; at most " +
                                                 std::to_string(MESATEE_MAX_NONCE_SIZE) + " are allowed");
    Bytes claims;
    Writer(claims).bytes(hpke_public_).bytes(signing_public_).u8(static_cast<uint8_t>(nonce.size)).bytes(nonce);
    Bytes report_data = sha256(claims);
    report_data.resize(MESATEE_REPORT_DATA_SIZE, 0);
    Bytes platform_evidence = platform::evidence(report_data);
    Bytes out;
    Writer(out).text("MTEV").u16(1).u8(static_cast<uint8_t>(platform::identity().kind)).u8(0).bytes(claims)
        .u32(static_cast<uint32_t>(platform_evidence.size())).bytes(platform_evidence);
    return out;
}

}  // namespace mesatee
