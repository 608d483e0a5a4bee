// echo and online_decrypt: Teaclave's first two built-ins, with its argument names.
#include <string>

#include "crypto.hpp"
#include "functions/registry.hpp"
#include "functions/text.hpp"

namespace mesatee::functions {
namespace {

using msgpack::Value;


Bytes run_echo(const Arguments& args, const Inputs&, Outputs&) { return text_bytes(args.str("message")); }

// Strict standard base64 (RFC 4648 §4) with padding.
Bytes base64_decode(const std::string& text, const std::string& what) {
    auto value = [](char c) -> int {
        if (c >= 'A' && c <= 'Z') return c - 'A';
        if (c >= 'a' && c <= 'z') return c - 'a' + 26;
        if (c >= '0' && c <= '9') return c - '0' + 52;
        return c == '+' ? 62 : c == '/' ? 63 : -1;
    };
    if (text.size() % 4 != 0) fail(MESATEE_ERROR_ARGUMENT_INVALID, what + " is not base64 (length not a multiple of 4)");
    Bytes out;
    out.reserve(text.size() / 4 * 3);
    for (size_t i = 0; i < text.size(); i += 4) {
        int v[4];
        int pad = 0;
        for (int k = 0; k < 4; ++k) {
            char c = text[i + k];
            bool last_group = i + 4 == text.size();
            if (c == '=' && last_group && k >= 2 && (k == 3 || text[i + 3] == '=')) {
                v[k] = 0;
                ++pad;
                continue;
            }
            if (pad || (v[k] = value(c)) < 0)
                fail(MESATEE_ERROR_ARGUMENT_INVALID, what + " is not base64 (bad character at " + std::to_string(i + k) + ")");
        }
        uint32_t n = (v[0] << 18) | (v[1] << 12) | (v[2] << 6) | v[3];
        out.push_back(static_cast<uint8_t>(n >> 16));
        if (pad < 2) out.push_back(static_cast<uint8_t>(n >> 8));
        if (pad < 1) out.push_back(static_cast<uint8_t>(n));
    }
    return out;
}

Bytes run_online_decrypt(const Arguments& args, const Inputs&, Outputs&) {
    Bytes key = base64_decode(args.str("key"), "key");
    Bytes nonce = base64_decode(args.str("nonce"), "nonce");
    Bytes data = base64_decode(args.str("encrypted_data"), "encrypted_data");
    size_t key_size = args.str("algorithm") == "aes128gcm" ? 16 : 32;
    if (key.size() != key_size)
        fail(MESATEE_ERROR_ARGUMENT_INVALID, "key must be " + std::to_string(key_size) + " bytes for " + args.str("algorithm"));
    if (nonce.size() != crypto::kGcmIvSize) fail(MESATEE_ERROR_ARGUMENT_INVALID, "nonce must be 12 bytes");
    if (data.size() < crypto::kGcmTagSize) fail(MESATEE_ERROR_ARGUMENT_INVALID, "encrypted_data is shorter than its tag");
    Bytes out(data.size() - crypto::kGcmTagSize);
    if (!crypto::aes_gcm_decrypt(key, nonce, {}, {}, ByteView(data.data(), out.size()),
                                 ByteView(data.data() + out.size(), crypto::kGcmTagSize), out.data()))
        fail(MESATEE_ERROR_FUNCTION_FAILED, "encrypted_data failed authentication under the given key and nonce");
    return out;
}

constexpr double kMaxArgument = 1 << 20;

}  // namespace

const Function& echo() {
    static const Function fn{
        "echo", 1, "Returns its message: a check that tasks run end to end.",
        {{"message", ArgType::String, std::nullopt, 0.0, kMaxArgument, {}, "the text to return"}},
        {}, {}, run_echo};
    return fn;
}

const Function& online_decrypt() {
    static const Function fn{
        "online_decrypt", 1, "Decrypts AES-GCM data given in the arguments (empty AAD, ciphertext then tag).",
        {{"key", ArgType::String, std::nullopt, 1.0, 64.0, {}, "the key, base64"},
         {"nonce", ArgType::String, std::nullopt, 1.0, 64.0, {}, "the 12-byte nonce, base64"},
         {"encrypted_data", ArgType::String, std::nullopt, 1.0, kMaxArgument, {}, "ciphertext then tag, base64"},
         {"algorithm", ArgType::String, Value::str("aes256gcm"), std::nullopt, std::nullopt, {"aes256gcm", "aes128gcm"},
          "aes256gcm or aes128gcm"}},
        {}, {}, run_online_decrypt};
    return fn;
}

namespace {
const Registration registered_echo(echo());
const Registration registered_online_decrypt(online_decrypt());
}  // namespace

}  // namespace mesatee::functions
