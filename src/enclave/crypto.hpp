// Trusted cryptographic building blocks over libcrypto.
#pragma once

#include "common/openssl.hpp"

namespace mesatee::crypto {

constexpr size_t kGcmIvSize = 12;
constexpr size_t kGcmTagSize = 16;

// The AEADs with a 12-byte nonce and a 16-byte tag.
enum class Aead { Aes128Gcm, Aes256Gcm, ChaCha20Poly1305 };
size_t key_size(Aead aead);

// Encrypts over (aad1 ‖ aad2); out receives plaintext.size bytes, then the tag.
void aead_encrypt(Aead aead, ByteView key, ByteView iv, ByteView aad1, ByteView aad2, ByteView plaintext, uint8_t* out);
// Returns false when the tag does not verify; out is then wiped.
bool aead_decrypt(Aead aead, ByteView key, ByteView iv, ByteView aad1, ByteView aad2, ByteView ciphertext, ByteView tag,
                  uint8_t* out);

// AES-GCM, AES-128 or AES-256 by the key's size.
inline Aead aes_gcm_for(ByteView key) { return key.size == 16 ? Aead::Aes128Gcm : Aead::Aes256Gcm; }
inline void aes_gcm_encrypt(ByteView key, ByteView iv, ByteView aad1, ByteView aad2, ByteView plaintext, uint8_t* out) {
    aead_encrypt(aes_gcm_for(key), key, iv, aad1, aad2, plaintext, out);
}
inline bool aes_gcm_decrypt(ByteView key, ByteView iv, ByteView aad1, ByteView aad2, ByteView ciphertext, ByteView tag,
                            uint8_t* out) {
    return aead_decrypt(aes_gcm_for(key), key, iv, aad1, aad2, ciphertext, tag, out);
}

// X25519 shared secret; throws CRYPTO for an invalid peer key (or an all-zero result).
SecretBytes x25519(ByteView private_key, ByteView peer_public);

// A raw X25519 or Ed25519 key from its 32-byte private part.
PkeyPtr raw_private_key(int type, ByteView secret);
Bytes raw_public_key(EVP_PKEY* key);
Bytes ed25519_sign(EVP_PKEY* key, ByteView message);

}  // namespace mesatee::crypto
