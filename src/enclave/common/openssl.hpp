// RAII owners for OpenSSL objects and small helpers over libcrypto, shared by
// both sides of the boundary (header-only, no platform code).
#pragma once

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include <initializer_list>
#include <memory>
#include <string>

#include "common/bytes.hpp"

namespace mesatee {

template <auto Free>
struct OsslDeleter {
    template <typename T>
    void operator()(T* p) const { Free(p); }
};
template <typename T, auto Free>
using OsslPtr = std::unique_ptr<T, OsslDeleter<Free>>;

using PkeyPtr = OsslPtr<EVP_PKEY, EVP_PKEY_free>;
using PkeyCtxPtr = OsslPtr<EVP_PKEY_CTX, EVP_PKEY_CTX_free>;
using MdCtxPtr = OsslPtr<EVP_MD_CTX, EVP_MD_CTX_free>;
using CipherCtxPtr = OsslPtr<EVP_CIPHER_CTX, EVP_CIPHER_CTX_free>;
using X509Ptr = OsslPtr<X509, X509_free>;

// A failure inside libcrypto: the queue is cleared so it cannot leak into a later message.
[[noreturn]] inline void crypto_fail(const char* what) {
    unsigned long code = ERR_get_error();
    ERR_clear_error();
    char reason[160] = "unknown";
    if (code) ERR_error_string_n(code, reason, sizeof reason);
    fail(MESATEE_ERROR_CRYPTO, std::string(what) + " failed (" + reason + ")");
}

inline void check_ossl(int ok, const char* what) {
    if (ok != 1) crypto_fail(what);
}

inline Bytes sha256(ByteView data) {
    Bytes out(32);
    unsigned int n = 0;
    check_ossl(EVP_Digest(data.data, data.size, out.data(), &n, EVP_sha256(), nullptr), "SHA-256");
    return out;
}

// HMAC-SHA256 over the concatenation of parts.
inline void hmac_sha256(ByteView key, std::initializer_list<ByteView> parts, uint8_t out[32]) {
    static EVP_MAC* mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
    if (!mac) crypto_fail("HMAC fetch");
    OsslPtr<EVP_MAC_CTX, EVP_MAC_CTX_free> ctx(EVP_MAC_CTX_new(mac));
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", digest, 0), OSSL_PARAM_END};
    // A null key means "keep the previous key" to OpenSSL; an empty key must still be a key.
    static const uint8_t empty = 0;
    if (!ctx || EVP_MAC_init(ctx.get(), key.data ? key.data : &empty, key.size, params) != 1)
        crypto_fail("HMAC-SHA256 init");
    for (ByteView part : parts)
        if (part.size && EVP_MAC_update(ctx.get(), part.data, part.size) != 1) crypto_fail("HMAC-SHA256");
    size_t n = 0;
    if (EVP_MAC_final(ctx.get(), out, &n, 32) != 1) crypto_fail("HMAC-SHA256");
}

inline void random_bytes(uint8_t* out, size_t n) {
    check_ossl(RAND_bytes(out, static_cast<int>(n)), "random generation");
}

// Holds key material and wipes it when it goes out of scope.
class SecretBytes {
public:
    explicit SecretBytes(size_t n = 0) : bytes_(n) {}
    SecretBytes(const SecretBytes&) = delete;
    SecretBytes& operator=(const SecretBytes&) = delete;
    SecretBytes(SecretBytes&& o) noexcept : bytes_(std::move(o.bytes_)) {}
    SecretBytes& operator=(SecretBytes&& o) noexcept {
        OPENSSL_cleanse(bytes_.data(), bytes_.size());
        bytes_ = std::move(o.bytes_);
        return *this;
    }
    ~SecretBytes() { OPENSSL_cleanse(bytes_.data(), bytes_.size()); }
    uint8_t* data() { return bytes_.data(); }
    const uint8_t* data() const { return bytes_.data(); }
    size_t size() const { return bytes_.size(); }
    ByteView view() const { return ByteView(bytes_.data(), bytes_.size()); }

private:
    Bytes bytes_;
};

}  // namespace mesatee
