// The enclave's long-term identity: an X25519 key (HPKE: keys travel to the
// enclave encrypted to it) and an Ed25519 key (it signs receipts). Created on
// first start, sealed (product policy) for the host to keep, restored from
// that blob on later starts.
#pragma once

#include <atomic>
#include <mutex>

#include "common/openssl.hpp"

namespace mesatee {

class EnclaveState {
public:
    // Empty sealed_state: fresh keys. Otherwise the keys sealed by an earlier run.
    void initialize(ByteView sealed_state);
    bool initialized() const { return initialized_.load(std::memory_order_acquire); }
    const Bytes& sealed_state() const { return sealed_state_; }
    const Bytes& hpke_public_key() const { return hpke_public_; }
    const Bytes& signing_public_key() const { return signing_public_; }
    // Evidence whose report data binds the public keys and the nonce.
    Bytes evidence(ByteView nonce) const;
    ByteView hpke_private_key() const { return hpke_private_.view(); }
    Bytes sign(ByteView message) const;

private:
    void load_keys(ByteView plaintext);
    void seal_keys();

    std::mutex init_mutex_;
    std::atomic<bool> initialized_{false};  // published after the keys, read without the lock
    SecretBytes hpke_private_{32};
    SecretBytes signing_seed_{32};
    PkeyPtr hpke_key_;
    PkeyPtr signing_key_;
    Bytes hpke_public_;
    Bytes signing_public_;
    Bytes sealed_state_;
};

}  // namespace mesatee
