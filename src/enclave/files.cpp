#include "files.hpp"

#include "crypto.hpp"

namespace mesatee::files {
namespace {

constexpr char kMagic[] = "MTEF";

void chunk_nonce(const uint8_t* prefix, uint32_t index, bool final, uint8_t nonce[12]) {
    std::memcpy(nonce, prefix, 7);
    nonce[7] = static_cast<uint8_t>(index >> 24);
    nonce[8] = static_cast<uint8_t>(index >> 16);
    nonce[9] = static_cast<uint8_t>(index >> 8);
    nonce[10] = static_cast<uint8_t>(index);
    nonce[11] = final ? 1 : 0;
}

}  // namespace

Bytes encrypt_file(ByteView key, ByteView plaintext, unsigned chunk_log2) {
    if (key.size != 32) fail(MESATEE_ERROR_INTERNAL, "file keys are 32 bytes");
    const size_t chunk = size_t(1) << chunk_log2;
    size_t chunks = plaintext.size / chunk + 1;  // the final chunk may be empty
    if (plaintext.size % chunk == 0 && plaintext.size > 0) chunks -= 1;
    if (chunks > (size_t(1) << 32)) fail(MESATEE_ERROR_INVALID_ARGUMENT, "file too large for its chunk size");
    Bytes out(kHeaderSize + plaintext.size + chunks * crypto::kGcmTagSize);
    std::memcpy(out.data(), kMagic, 4);
    out[4] = 1;
    out[5] = 1;
    out[6] = 0;
    out[7] = static_cast<uint8_t>(chunk_log2);
    random_bytes(out.data() + 8, 7);
    out[15] = 0;
    ByteView header(out.data(), kHeaderSize);
    uint8_t* dst = out.data() + kHeaderSize;
    for (size_t i = 0; i < chunks; ++i) {
        size_t offset = i * chunk;
        size_t n = std::min(chunk, plaintext.size - offset);
        uint8_t nonce[12];
        chunk_nonce(out.data() + 8, static_cast<uint32_t>(i), i + 1 == chunks, nonce);
        crypto::aes_gcm_encrypt(key, ByteView(nonce, 12), header, {}, ByteView(plaintext.data + offset, n), dst);
        dst += n + crypto::kGcmTagSize;
    }
    return out;
}

Bytes decrypt_file(ByteView key, ByteView file, const std::string& what) {
    if (key.size != 32) fail(MESATEE_ERROR_CRYPTO, what + ": file key must be 32 bytes");
    Reader r(file, what.c_str());
    r.expect(literal(kMagic), "magic");
    if (uint8_t v = r.u8("version"); v != 1) r.reject("unsupported file version " + std::to_string(v));
    if (uint8_t a = r.u8("algorithm"); a != 1) r.reject("unknown algorithm " + std::to_string(a));
    if (r.u8("reserved") != 0) r.reject("reserved byte is set");
    unsigned log2 = r.u8("chunk size");
    if (log2 < 12 || log2 > 24) r.reject("chunk size 2^" + std::to_string(log2) + " is outside 2^12..2^24");
    ByteView prefix = r.take(7, "nonce prefix");
    if (r.u8("reserved") != 0) r.reject("reserved byte is set");
    ByteView header(file.data, kHeaderSize);
    const size_t chunk = size_t(1) << log2, sealed_chunk = chunk + crypto::kGcmTagSize;
    size_t body = r.remaining();
    // Every chunk but the last is full; the last holds 0..chunk bytes plus its tag.
    size_t chunks = body / sealed_chunk + (body % sealed_chunk ? 1 : 0);
    if (chunks == 0) r.reject("truncated: no final chunk");
    if (body % sealed_chunk != 0 && body % sealed_chunk < crypto::kGcmTagSize)
        r.reject("truncated: the last chunk is shorter than its tag");
    if (chunks > (size_t(1) << 32)) r.reject("more than 2^32 chunks");
    Bytes out(body - chunks * crypto::kGcmTagSize);
    const uint8_t* src = file.data + kHeaderSize;
    uint8_t* dst = out.data();
    for (size_t i = 0; i < chunks; ++i) {
        bool final = i + 1 == chunks;
        size_t n = final ? (body - i * sealed_chunk) - crypto::kGcmTagSize : chunk;
        uint8_t nonce[12];
        chunk_nonce(prefix.data, static_cast<uint32_t>(i), final, nonce);
        if (!crypto::aes_gcm_decrypt(key, ByteView(nonce, 12), header, {}, ByteView(src, n),
                                     ByteView(src + n, crypto::kGcmTagSize), dst)) {
            OPENSSL_cleanse(out.data(), out.size());
            fail(MESATEE_ERROR_CRYPTO, what + ": chunk " + std::to_string(i) +
                                           " failed authentication (tampered, reordered, truncated, spliced or wrong key)");
        }
        src += n + crypto::kGcmTagSize;
        dst += n;
    }
    return out;
}

Bytes decrypt_teaclave(ByteView key, ByteView iv, ByteView file, const std::string& what) {
    if ((key.size != 16 && key.size != 32) || iv.size != crypto::kGcmIvSize)
        fail(MESATEE_ERROR_CRYPTO, what + ": Teaclave files need a 16- or 32-byte key and a 12-byte IV");
    if (file.size < crypto::kGcmTagSize) fail(MESATEE_ERROR_FORMAT, what + ": shorter than its tag");
    static const uint8_t kAad[8] = {};
    Bytes out(file.size - crypto::kGcmTagSize);
    if (!crypto::aes_gcm_decrypt(key, iv, ByteView(kAad, 8), {}, ByteView(file.data, out.size()),
                                 ByteView(file.data + out.size(), crypto::kGcmTagSize), out.data()))
        fail(MESATEE_ERROR_CRYPTO, what + ": failed authentication (tampered or wrong key)");
    return out;
}

}  // namespace mesatee::files
