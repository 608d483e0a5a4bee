// HPKE (RFC 9180), base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
// single shot. On the wire: enc (32) ‖ ct. mesatee uses AES-256-GCM; the
// other AEADs are here for the RFC's test vectors.
#pragma once

#include "common/openssl.hpp"

namespace mesatee::hpke {

// RFC 9180 AEAD ids.
enum class Aead : uint16_t { Aes128Gcm = 1, Aes256Gcm = 2, ChaCha20Poly1305 = 3 };

constexpr size_t kEncSize = 32;
constexpr size_t kTagSize = 16;

struct Context {
    SecretBytes key;
    Bytes base_nonce;
    SecretBytes exporter_secret;
    Aead aead;
};

// X25519 key pair from input keying material (RFC 9180 §7.1.3).
SecretBytes derive_private_key(ByteView ikm);
Bytes public_key_of(ByteView private_key);

// Sender: the shared context and enc, with the ephemeral key given (tests) or fresh.
Context setup_sender(ByteView recipient_public, ByteView info, Aead aead, Bytes& enc,
                     const SecretBytes* ephemeral_private = nullptr);
// Recipient side; recipient_public saves recomputing it.
Context setup_recipient(ByteView enc, ByteView recipient_private, ByteView recipient_public, ByteView info, Aead aead);

Bytes context_seal(const Context& ctx, ByteView aad, ByteView plaintext);
// Throws CRYPTO when the ciphertext does not open.
Bytes context_open(const Context& ctx, ByteView aad, ByteView ciphertext);
Bytes context_export(const Context& ctx, ByteView exporter_context, size_t length);

// Single shot, AES-256-GCM, empty AAD: enc ‖ ct.
Bytes seal(ByteView recipient_public, ByteView info, ByteView plaintext);
// Throws CRYPTO with `what` in the message when it does not open.
Bytes open(ByteView ciphertext, ByteView recipient_private, ByteView recipient_public, ByteView info,
           const std::string& what);

}  // namespace mesatee::hpke
