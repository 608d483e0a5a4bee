// rsa_sign: Teaclave's RSA signature of a string with a party's private key
// (PKCS#1 v1.5, SHA-256; the key a PKCS#1 DER RSAPrivateKey).
#include <string>

#include <openssl/core_names.h>
#include <openssl/decoder.h>

#include "common/openssl.hpp"
#include "functions/registry.hpp"

namespace mesatee::functions {
namespace {

constexpr int kMinBits = 2048, kMaxBits = 16384;

[[noreturn]] void bad_key(const std::string& problem) {
    ERR_clear_error();
    fail(MESATEE_ERROR_INPUT_INVALID, "input rsa_key: " + problem);
}

// The key from the type-specific DER (RSAPrivateKey), all of the input and nothing else.
PkeyPtr decode_key(const Bytes& der) {
    if (der.empty()) bad_key("is empty");
    EVP_PKEY* raw = nullptr;
    OsslPtr<OSSL_DECODER_CTX, OSSL_DECODER_CTX_free> decoder(OSSL_DECODER_CTX_new_for_pkey(
        &raw, "DER", "type-specific", "RSA", OSSL_KEYMGMT_SELECT_PRIVATE_KEY, nullptr, nullptr));
    if (!decoder) crypto_fail("RSA key decoder");
    const unsigned char* p = der.data();
    size_t left = der.size();
    if (OSSL_DECODER_from_data(decoder.get(), &p, &left) != 1 || !raw)
        bad_key("is not a PKCS#1 DER RSA private key");
    PkeyPtr key(raw);
    if (left != 0) bad_key("has " + std::to_string(left) + " bytes after the key");
    // The decoder also takes other structures (PKCS#8): only the exact PKCS#1 encoding passes.
    unsigned char* encoded = nullptr;
    int n = i2d_PrivateKey(key.get(), &encoded);
    bool exact = n > 0 && static_cast<size_t>(n) == der.size() && CRYPTO_memcmp(encoded, der.data(), der.size()) == 0;
    if (n > 0) OPENSSL_clear_free(encoded, static_cast<size_t>(n));
    if (!exact) bad_key("is not a PKCS#1 DER RSA private key");
    int bits = EVP_PKEY_get_bits(key.get());
    if (bits < kMinBits || bits > kMaxBits)
        bad_key("the key has " + std::to_string(bits) + " bits; " + std::to_string(kMinBits) + " to " +
                std::to_string(kMaxBits) + " are accepted");
    return key;
}

std::string base64(const Bytes& data) {
    std::string out(4 * ((data.size() + 2) / 3) + 1, '\0');
    int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), data.data(), static_cast<int>(data.size()));
    out.resize(static_cast<size_t>(n));
    return out;
}

Bytes run_rsa_sign(const Arguments& args, const Inputs& inputs, Outputs&) {
    PkeyPtr key = decode_key(inputs.at("rsa_key"));
    const std::string& data = args.str("data");
    const auto* message = reinterpret_cast<const unsigned char*>(data.data());

    MdCtxPtr sign(EVP_MD_CTX_new());
    size_t size = 0;
    if (!sign || EVP_DigestSignInit(sign.get(), nullptr, EVP_sha256(), nullptr, key.get()) != 1 ||
        EVP_DigestSign(sign.get(), nullptr, &size, message, data.size()) != 1)
        crypto_fail("RSA signing");
    Bytes signature(size);
    if (EVP_DigestSign(sign.get(), signature.data(), &size, message, data.size()) != 1) {
        ERR_clear_error();
        fail(MESATEE_ERROR_FUNCTION_FAILED, "rsa_sign: the key cannot sign (inconsistent key)");
    }
    signature.resize(size);

    // A key whose private half does not match its public half must not yield a signature.
    MdCtxPtr verify(EVP_MD_CTX_new());
    if (!verify || EVP_DigestVerifyInit(verify.get(), nullptr, EVP_sha256(), nullptr, key.get()) != 1 ||
        EVP_DigestVerify(verify.get(), signature.data(), signature.size(), message, data.size()) != 1) {
        ERR_clear_error();
        fail(MESATEE_ERROR_FUNCTION_FAILED, "rsa_sign: the signature does not verify under the key (inconsistent key)");
    }
    std::string text = base64(signature);
    return Bytes(text.begin(), text.end());
}

}  // namespace

const Function& rsa_sign() {
    static const Function fn{
        "rsa_sign", 1, "Signs data with an RSA private key (PKCS#1 v1.5, SHA-256); returns the signature in base64.",
        {{"data", ArgType::String, std::nullopt, 0.0, static_cast<double>(1 << 20), {}, "the text to sign"}},
        {{"rsa_key", false, "the RSA private key, PKCS#1 DER (binary), 2048 to 16384 bits"}},
        {},
        run_rsa_sign};
    return fn;
}

namespace {
const Registration registered_rsa_sign(rsa_sign());
}  // namespace

}  // namespace mesatee::functions
