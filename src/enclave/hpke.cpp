#include "hpke.hpp"

#include "crypto.hpp"

namespace mesatee::hpke {
namespace {

constexpr char kVersionLabel[] = "HPKE-v1";
const uint8_t kKemSuite[] = {'K', 'E', 'M', 0x00, 0x20};

Bytes hpke_suite(Aead aead) {
    return {'H', 'P', 'K', 'E', 0x00, 0x20, 0x00, 0x01, 0x00, static_cast<uint8_t>(aead)};
}

crypto::Aead cipher(Aead aead) {
    switch (aead) {
        case Aead::Aes128Gcm: return crypto::Aead::Aes128Gcm;
        case Aead::Aes256Gcm: return crypto::Aead::Aes256Gcm;
        case Aead::ChaCha20Poly1305: return crypto::Aead::ChaCha20Poly1305;
    }
    fail(MESATEE_ERROR_INVALID_ARGUMENT, "unknown HPKE AEAD");
}

SecretBytes labeled_extract(ByteView suite, ByteView salt, const char* label, ByteView ikm) {
    SecretBytes prk(32);
    hmac_sha256(salt, {literal(kVersionLabel), suite, literal(label), ikm}, prk.data());
    return prk;
}

SecretBytes labeled_expand(ByteView suite, ByteView prk, const char* label, ByteView info, size_t length) {
    if (length > 255 * 32) fail(MESATEE_ERROR_INVALID_ARGUMENT, "HPKE expand length too large");
    uint8_t prefix[2] = {static_cast<uint8_t>(length >> 8), static_cast<uint8_t>(length)};
    SecretBytes out(length);
    uint8_t block[32];
    size_t done = 0;
    for (uint8_t counter = 1; done < length; ++counter) {
        ByteView previous(block, counter == 1 ? 0 : 32);
        hmac_sha256(prk, {previous, ByteView(prefix, 2), literal(kVersionLabel), suite, literal(label), info,
                          ByteView(&counter, 1)},
                    block);
        size_t n = std::min<size_t>(32, length - done);
        std::memcpy(out.data() + done, block, n);
        done += n;
    }
    OPENSSL_cleanse(block, sizeof block);
    return out;
}

SecretBytes shared_secret(ByteView dh, ByteView enc, ByteView recipient_public) {
    ByteView suite(kKemSuite, sizeof kKemSuite);
    SecretBytes eae_prk = labeled_extract(suite, {}, "eae_prk", dh);
    Bytes kem_context = enc.to_bytes();
    kem_context.insert(kem_context.end(), recipient_public.data, recipient_public.data + recipient_public.size);
    return labeled_expand(suite, eae_prk.view(), "shared_secret", kem_context, 32);
}

Context key_schedule(const SecretBytes& shared, ByteView info, Aead aead) {
    Bytes suite = hpke_suite(aead);
    SecretBytes psk_id_hash = labeled_extract(suite, {}, "psk_id_hash", {});
    SecretBytes info_hash = labeled_extract(suite, {}, "info_hash", info);
    Bytes context{0x00};  // mode_base
    context.insert(context.end(), psk_id_hash.data(), psk_id_hash.data() + 32);
    context.insert(context.end(), info_hash.data(), info_hash.data() + 32);
    SecretBytes secret = labeled_extract(suite, shared.view(), "secret", {});
    Context ctx{labeled_expand(suite, secret.view(), "key", context, crypto::key_size(cipher(aead))), {},
                labeled_expand(suite, secret.view(), "exp", context, 32), aead};
    ctx.base_nonce = labeled_expand(suite, secret.view(), "base_nonce", context, crypto::kGcmIvSize).view().to_bytes();
    return ctx;
}

}  // namespace

SecretBytes derive_private_key(ByteView ikm) {
    ByteView suite(kKemSuite, sizeof kKemSuite);
    SecretBytes dkp_prk = labeled_extract(suite, {}, "dkp_prk", ikm);
    return labeled_expand(suite, dkp_prk.view(), "sk", {}, 32);
}

Bytes public_key_of(ByteView private_key) {
    PkeyPtr key = crypto::raw_private_key(EVP_PKEY_X25519, private_key);
    return crypto::raw_public_key(key.get());
}

Context setup_sender(ByteView recipient_public, ByteView info, Aead aead, Bytes& enc,
                     const SecretBytes* ephemeral_private) {
    SecretBytes fresh(32);
    if (!ephemeral_private) {
        random_bytes(fresh.data(), 32);
        ephemeral_private = &fresh;
    }
    enc = public_key_of(ephemeral_private->view());
    SecretBytes dh = crypto::x25519(ephemeral_private->view(), recipient_public);
    return key_schedule(shared_secret(dh.view(), enc, recipient_public), info, aead);
}

Context setup_recipient(ByteView enc, ByteView recipient_private, ByteView recipient_public, ByteView info,
                        Aead aead) {
    if (enc.size != kEncSize) fail(MESATEE_ERROR_CRYPTO, "HPKE: enc must be 32 bytes");
    SecretBytes dh = crypto::x25519(recipient_private, enc);
    return key_schedule(shared_secret(dh.view(), enc, recipient_public), info, aead);
}

Bytes context_seal(const Context& ctx, ByteView aad, ByteView plaintext) {
    Bytes out(plaintext.size + kTagSize);
    crypto::aead_encrypt(cipher(ctx.aead), ctx.key.view(), ctx.base_nonce, aad, {}, plaintext, out.data());
    return out;
}

Bytes context_open(const Context& ctx, ByteView aad, ByteView ciphertext) {
    if (ciphertext.size < kTagSize) fail(MESATEE_ERROR_CRYPTO, "HPKE: ciphertext shorter than its tag");
    Bytes out(ciphertext.size - kTagSize);
    ByteView body(ciphertext.data, out.size()), tag(ciphertext.data + out.size(), kTagSize);
    if (!crypto::aead_decrypt(cipher(ctx.aead), ctx.key.view(), ctx.base_nonce, aad, {}, body, tag, out.data()))
        fail(MESATEE_ERROR_CRYPTO, "HPKE: the ciphertext does not open");
    return out;
}

Bytes context_export(const Context& ctx, ByteView exporter_context, size_t length) {
    return labeled_expand(hpke_suite(ctx.aead), ctx.exporter_secret.view(), "sec", exporter_context, length)
        .view()
        .to_bytes();
}

Bytes seal(ByteView recipient_public, ByteView info, ByteView plaintext) {
    Bytes enc;
    Context ctx = setup_sender(recipient_public, info, Aead::Aes256Gcm, enc);
    Bytes ct = context_seal(ctx, {}, plaintext);
    enc.insert(enc.end(), ct.begin(), ct.end());
    return enc;
}

Bytes open(ByteView ciphertext, ByteView recipient_private, ByteView recipient_public, ByteView info,
           const std::string& what) {
    try {
        if (ciphertext.size < kEncSize + kTagSize) fail(MESATEE_ERROR_CRYPTO, "too short");
        Context ctx = setup_recipient(ByteView(ciphertext.data, kEncSize), recipient_private, recipient_public, info,
                                      Aead::Aes256Gcm);
        return context_open(ctx, {}, ByteView(ciphertext.data + kEncSize, ciphertext.size - kEncSize));
    } catch (const Error&) {
        fail(MESATEE_ERROR_CRYPTO, what + " did not open (made for another key, task or purpose, or tampered)");
    }
}

}  // namespace mesatee::hpke
