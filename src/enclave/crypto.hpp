// Trusted cryptographic building blocks over libcrypto.
#pragma once

#include "common/openssl.hpp"

namespace mesatee::crypto {

constexpr size_t kGcmIvSize = 12;
constexpr size_t kGcmTagSize = 16;

// AES-256-GCM over (aad1 ‖ aad2); out receives plaintext.size bytes, then the tag.
void aes256gcm_encrypt(ByteView key, ByteView iv, ByteView aad1, ByteView aad2, ByteView plaintext, uint8_t* out);
// Returns false when the tag does not verify; out is then wiped.
bool aes256gcm_decrypt(ByteView key, ByteView iv, ByteView aad1, ByteView aad2, ByteView ciphertext, ByteView tag,
                       uint8_t* out);

// A raw X25519 or Ed25519 key from its 32-byte private part.
PkeyPtr raw_private_key(int type, ByteView secret);
Bytes raw_public_key(EVP_PKEY* key);
Bytes ed25519_sign(EVP_PKEY* key, ByteView message);

}  // namespace mesatee::crypto
