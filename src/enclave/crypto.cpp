#include "crypto.hpp"

namespace mesatee::crypto {
namespace {

// Fetched once: looking an algorithm up by name on every call costs more than sealing 4 KiB.
const EVP_CIPHER* cipher_of(Aead aead) {
    static EVP_CIPHER* ciphers[3] = {EVP_CIPHER_fetch(nullptr, "AES-128-GCM", nullptr),
                                     EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr),
                                     EVP_CIPHER_fetch(nullptr, "ChaCha20-Poly1305", nullptr)};
    EVP_CIPHER* cipher = ciphers[static_cast<int>(aead)];
    if (!cipher) crypto_fail("AEAD fetch");
    return cipher;
}

// One context per thread and AEAD, re-keyed for each message: creating a
// context costs more than the AES-GCM of a 4 KiB message.
EVP_CIPHER_CTX* aead_context(Aead aead, ByteView key, ByteView iv, bool encrypt) {
    if (key.size != key_size(aead) || iv.size != kGcmIvSize)
        fail(MESATEE_ERROR_INTERNAL, "AEAD key or nonce has the wrong size");
    thread_local CipherCtxPtr contexts[3];
    CipherCtxPtr& ctx = contexts[static_cast<int>(aead)];
    if (!ctx) {
        CipherCtxPtr fresh(EVP_CIPHER_CTX_new());
        if (!fresh) crypto_fail("cipher context");
        check_ossl(EVP_CipherInit_ex2(fresh.get(), cipher_of(aead), nullptr, nullptr, 1, nullptr), "AEAD init");
        ctx = std::move(fresh);
    }
    check_ossl(EVP_CipherInit_ex2(ctx.get(), nullptr, key.data, iv.data, encrypt ? 1 : 0, nullptr), "AEAD init");
    return ctx.get();
}

// libcrypto takes int lengths: feed large inputs in pieces.
constexpr size_t kStep = size_t(1) << 30;

void feed_aad(EVP_CIPHER_CTX* ctx, ByteView aad) {
    for (size_t done = 0; done < aad.size; done += kStep) {
        int n = 0;
        size_t len = std::min(kStep, aad.size - done);
        check_ossl(EVP_CipherUpdate(ctx, nullptr, &n, aad.data + done, static_cast<int>(len)), "AEAD AAD");
    }
}

void feed(EVP_CIPHER_CTX* ctx, ByteView in, uint8_t* out) {
    for (size_t done = 0; done < in.size; done += kStep) {
        int n = 0;
        size_t len = std::min(kStep, in.size - done);
        check_ossl(EVP_CipherUpdate(ctx, out + done, &n, in.data + done, static_cast<int>(len)), "AEAD update");
    }
}

}  // namespace

size_t key_size(Aead aead) { return aead == Aead::Aes128Gcm ? 16 : 32; }

void aead_encrypt(Aead aead, ByteView key, ByteView iv, ByteView aad1, ByteView aad2, ByteView plaintext,
                  uint8_t* out) {
    EVP_CIPHER_CTX* ctx = aead_context(aead, key, iv, true);
    feed_aad(ctx, aad1);
    feed_aad(ctx, aad2);
    feed(ctx, plaintext, out);
    int n = 0;
    check_ossl(EVP_CipherFinal_ex(ctx, out + plaintext.size, &n), "AEAD final");
    check_ossl(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, kGcmTagSize, out + plaintext.size),
               "AEAD tag");
}

bool aead_decrypt(Aead aead, ByteView key, ByteView iv, ByteView aad1, ByteView aad2, ByteView ciphertext,
                  ByteView tag, uint8_t* out) {
    if (tag.size != kGcmTagSize) return false;
    EVP_CIPHER_CTX* ctx = aead_context(aead, key, iv, false);
    feed_aad(ctx, aad1);
    feed_aad(ctx, aad2);
    feed(ctx, ciphertext, out);
    check_ossl(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, kGcmTagSize, const_cast<uint8_t*>(tag.data)),
               "AEAD tag");
    int n = 0;
    if (EVP_CipherFinal_ex(ctx, out + ciphertext.size, &n) == 1) return true;
    ERR_clear_error();
    OPENSSL_cleanse(out, ciphertext.size);  // never hand out unauthenticated plaintext
    return false;
}

SecretBytes x25519(ByteView private_key, ByteView peer_public) {
    PkeyPtr own = raw_private_key(EVP_PKEY_X25519, private_key);
    PkeyPtr peer(EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, nullptr, peer_public.data, peer_public.size));
    if (!peer) crypto_fail("X25519 public key");
    PkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, own.get(), nullptr));
    SecretBytes secret(32);
    size_t n = secret.size();
    if (!ctx || EVP_PKEY_derive_init(ctx.get()) != 1 || EVP_PKEY_derive_set_peer(ctx.get(), peer.get()) != 1 ||
        EVP_PKEY_derive(ctx.get(), secret.data(), &n) != 1 || n != 32)
        crypto_fail("X25519");
    return secret;
}

PkeyPtr raw_private_key(int type, ByteView secret) {
    PkeyPtr key(EVP_PKEY_new_raw_private_key(type, nullptr, secret.data, secret.size));
    if (!key) crypto_fail("raw private key");
    return key;
}

Bytes raw_public_key(EVP_PKEY* key) {
    Bytes out(32);
    size_t n = out.size();
    check_ossl(EVP_PKEY_get_raw_public_key(key, out.data(), &n), "raw public key");
    if (n != 32) fail(MESATEE_ERROR_CRYPTO, "public key has an unexpected size");
    return out;
}

Bytes ed25519_sign(EVP_PKEY* key, ByteView message) {
    MdCtxPtr ctx(EVP_MD_CTX_new());
    if (!ctx) crypto_fail("signature context");
    check_ossl(EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, key), "Ed25519 init");
    Bytes sig(64);
    size_t n = sig.size();
    check_ossl(EVP_DigestSign(ctx.get(), sig.data(), &n, message.data, message.size), "Ed25519 sign");
    return sig;
}

}  // namespace mesatee::crypto
