// Test-only: the trusted sources built as a plain library (as CCF builds its
// enclave code for unit tests), driven from pytest through one C entry point.
// Requests and replies are canonical msgpack maps.
#include <chrono>
#include <cstdlib>
#include <cstring>

#include "crypto.hpp"
#include "files.hpp"
#include "functions/registry.hpp"
#include "hpke.hpp"
#include "manifest.hpp"
#include "msgpack.hpp"

using namespace mesatee;
using msgpack::Value;

namespace {

const Bytes& bin(const msgpack::Map& m, const char* key) { return msgpack::require(m, key, "probe").as_bin(key); }

Value hpke_vector(const msgpack::Map& in) {
    auto aead = static_cast<hpke::Aead>(msgpack::require(in, "aead", "probe").as_uint("aead"));
    SecretBytes skE = hpke::derive_private_key(bin(in, "ikmE"));
    SecretBytes skR = hpke::derive_private_key(bin(in, "ikmR"));
    Bytes pkR = hpke::public_key_of(skR.view());
    Bytes enc;
    hpke::Context sender = hpke::setup_sender(pkR, bin(in, "info"), aead, enc, &skE);
    Bytes ct = hpke::context_seal(sender, bin(in, "aad"), bin(in, "pt"));
    hpke::Context receiver = hpke::setup_recipient(enc, skR.view(), pkR, bin(in, "info"), aead);
    Bytes pt = hpke::context_open(receiver, bin(in, "aad"), ct);
    msgpack::Array exports;
    for (const Value& e : msgpack::require(in, "exports", "probe").as_array("exports")) {
        const msgpack::Map& x = e.as_map("export");
        exports.push_back(Value::bin(hpke::context_export(receiver, bin(x, "context"), msgpack::require(x, "length", "probe").as_uint("length"))));
    }
    return Value::map({{"skEm", Value::bin(skE.view().to_bytes())}, {"skRm", Value::bin(skR.view().to_bytes())},
                       {"pkRm", Value::bin(pkR)}, {"enc", Value::bin(enc)}, {"key", Value::bin(sender.key.view().to_bytes())},
                       {"base_nonce", Value::bin(sender.base_nonce)},
                       {"exporter_secret", Value::bin(sender.exporter_secret.view().to_bytes())},
                       {"ct", Value::bin(ct)}, {"pt", Value::bin(pt)}, {"exports", Value::array(std::move(exports))}});
}

// Timing loops for benchmarks/: the probe's own call overhead stays out of the figures.
uint64_t now_ns() {
    return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                     std::chrono::steady_clock::now().time_since_epoch())
                                     .count());
}

// A built-in function alone on plaintext inputs (no task protocol): `function`, `arguments`, `inputs`.
Value bench_function(const msgpack::Map& in, uint64_t n) {
    const functions::Function& fn =
        functions::find(msgpack::require(in, "function", "probe").as_str("function"), 1);
    functions::Arguments args =
        functions::validate_arguments(fn, msgpack::require(in, "arguments", "probe").as_map("arguments"));
    functions::Inputs inputs;
    for (const auto& [slot, data] : msgpack::require(in, "inputs", "probe").as_map("inputs"))
        inputs[slot] = data.as_bin("input");
    uint64_t start = now_ns();
    for (uint64_t i = 0; i < n; ++i) {
        functions::Outputs outputs;
        fn.run(args, inputs, outputs);
    }
    return Value::unsigned_integer(now_ns() - start);
}

Value bench(const msgpack::Map& in) {
    const std::string& what = msgpack::require(in, "what", "probe").as_str("what");
    uint64_t n = msgpack::require(in, "iterations", "probe").as_uint("iterations");
    if (what == "function") return bench_function(in, n);
    const Bytes& data = bin(in, "data");
    SecretBytes sk = hpke::derive_private_key(literal("bench recipient"));
    Bytes pk = hpke::public_key_of(sk.view());
    Bytes sealed = hpke::seal(pk, literal("info"), ByteView(data.data(), std::min<size_t>(data.size(), 32)));
    Bytes key(32, 7), iv(12, 9), file = files::encrypt_file(key, data, 16), out(data.size() + 16);
    uint64_t start = now_ns();
    for (uint64_t i = 0; i < n; ++i) {
        if (what == "hpke_open") hpke::open(sealed, sk.view(), pk, literal("info"), "bench");
        else if (what == "x25519") crypto::x25519(sk.view(), pk);
        else if (what == "file_encrypt") files::encrypt_file(key, data, 16);
        else if (what == "file_decrypt") files::decrypt_file(key, file, "bench");
        else if (what == "aes_gcm_encrypt") crypto::aes_gcm_encrypt(key, iv, {}, {}, data, out.data());
        else fail(MESATEE_ERROR_INVALID_ARGUMENT, "unknown benchmark " + what);
    }
    return Value::unsigned_integer(now_ns() - start);
}

Value run(const std::string& op, const msgpack::Map& in) {
    if (op == "bench") return bench(in);
    if (op == "hpke_vector") return hpke_vector(in);
    if (op == "hpke_seal") return Value::bin(hpke::seal(bin(in, "public_key"), bin(in, "info"), bin(in, "plaintext")));
    if (op == "hpke_open") {
        Bytes pk = hpke::public_key_of(bin(in, "private_key"));
        return Value::bin(hpke::open(bin(in, "ciphertext"), bin(in, "private_key"), pk, bin(in, "info"), "ciphertext"));
    }
    if (op == "file_encrypt")
        return Value::bin(files::encrypt_file(bin(in, "key"), bin(in, "plaintext"),
                                              static_cast<unsigned>(msgpack::require(in, "chunk_log2", "probe").as_uint("chunk_log2"))));
    if (op == "file_decrypt") return Value::bin(files::decrypt_file(bin(in, "key"), bin(in, "file"), "file"));
    if (op == "teaclave_decrypt") return Value::bin(files::decrypt_teaclave(bin(in, "key"), bin(in, "iv"), bin(in, "file"), "file"));
    if (op == "msgpack_reencode") return Value::bin(msgpack::encode(msgpack::decode(bin(in, "data"), "data")));
    if (op == "manifest_hash") return Value::bin(parse_manifest(bin(in, "data")).hash);
    fail(MESATEE_ERROR_INVALID_ARGUMENT, "unknown probe operation " + op);
}

}  // namespace

// Returns a mesatee_status; *reply is malloc'd (the result, or the error message), freed with probe_free.
extern "C" __attribute__((visibility("default"))) int probe_call(const char* op, const uint8_t* request, size_t size,
                                                                uint8_t** reply, size_t* reply_size) {
    Bytes out;
    int status = MESATEE_OK;
    try {
        Value in = msgpack::decode(ByteView(request, size), "probe request");
        out = msgpack::encode(run(op, in.as_map("probe request")));
    } catch (const Error& e) {
        status = e.status();
        out.assign(e.what(), e.what() + std::strlen(e.what()));
    }
    *reply = static_cast<uint8_t*>(std::malloc(out.size() + 1));
    std::memcpy(*reply, out.data(), out.size());
    *reply_size = out.size();
    return status;
}

extern "C" __attribute__((visibility("default"))) void probe_free(uint8_t* reply) { std::free(reply); }
