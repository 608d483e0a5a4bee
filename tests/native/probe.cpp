// Test-only: the trusted sources built as a plain library (as CCF builds its
// enclave code for unit tests), driven from pytest through one C entry point.
// Requests and replies are canonical msgpack maps.
#include <chrono>
#include <cstdlib>
#include <cstring>

#include "crypto.hpp"
#include "files.hpp"
#include "functions/learning.hpp"
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

// The learning cores on float64 rows (little-endian, row-major): times the training alone, no text parsing;
// returns the time, the result's doubles and the iterations run.
Value bench_learning(const msgpack::Map& in, const std::string& what, uint64_t n) {
    namespace learning = functions::learning;
    auto doubles = [&](const char* key) {
        const Bytes& b = bin(in, key);
        std::vector<double> v(b.size() / sizeof(double));
        std::memcpy(v.data(), b.data(), v.size() * sizeof(double));
        return v;
    };
    auto count = [&](const char* key) { return msgpack::require(in, key, "probe").as_uint(key); };
    std::vector<double> x = doubles("data"), extra = doubles("extra"), out;
    size_t cols = count("cols");
    learning::Rows rows{x.data(), x.size() / cols, cols, cols};
    int64_t iterations = static_cast<int64_t>(n);
    uint64_t start = now_ns();
    if (what == "learning_logistic_gd") {  // extra: the labels
        out = learning::logistic_gd(rows, extra.data(), 1, 0.1, iterations, 0.0);
    } else if (what == "learning_sigmoid") {  // data: the z values
        out.resize(x.size());
        learning::sigmoid_values(x.data(), out.data(), x.size());
    } else if (what == "learning_pca") {
        out = learning::pca_transform(rows, count("components"), true);
    } else if (what == "learning_kmeans") {  // extra: the initial centers
        auto result = learning::kmeans(rows, extra.size() / cols, iterations, 0.0, 0, extra.data());
        out = std::move(result.centers);
        iterations = result.iterations;
    } else {
        fail(MESATEE_ERROR_INVALID_ARGUMENT, "unknown benchmark " + what);
    }
    uint64_t ns = now_ns() - start;
    Bytes result(out.size() * sizeof(double));
    std::memcpy(result.data(), out.data(), result.size());
    return Value::map({{"ns", Value::unsigned_integer(ns)}, {"result", Value::bin(std::move(result))},
                       {"iterations", Value::integer(iterations)}});
}

Value bench(const msgpack::Map& in) {
    const std::string& what = msgpack::require(in, "what", "probe").as_str("what");
    uint64_t n = msgpack::require(in, "iterations", "probe").as_uint("iterations");
    if (what.rfind("learning_", 0) == 0) return bench_learning(in, what, n);
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

// A built-in function run `iterations` times (arguments validated as in a task): the time of the runs in ns,
// and the return value and outputs of the last.
// Runs a built-in alone, n times. With `keys` (slot -> file key) the inputs are MTEF files, decrypted
// inside the timed region, as the enclave does before a function runs.
Value run_function(const msgpack::Map& in) {
    const functions::Function& fn = functions::find(msgpack::require(in, "function", "probe").as_str("function"), 1);
    functions::Arguments args = functions::validate_arguments(fn, msgpack::require(in, "arguments", "probe").as_map("arguments"));
    const msgpack::Map& given = msgpack::require(in, "inputs", "probe").as_map("inputs");
    const msgpack::Value* keys = msgpack::find(in, "keys");
    uint64_t n = msgpack::require(in, "iterations", "probe").as_uint("iterations");
    functions::Inputs inputs;
    functions::Outputs outputs;
    Bytes returned;
    uint64_t start = now_ns();
    for (uint64_t i = 0; i < n; ++i) {
        for (const auto& [slot, data] : given)
            inputs[slot] = keys ? files::decrypt_file(msgpack::require(keys->as_map("keys"), slot, "keys").as_bin(slot),
                                                      data.as_bin(slot), slot)
                                : data.as_bin(slot);
        outputs.clear();
        returned = fn.run(args, inputs, outputs);
    }
    uint64_t ns = now_ns() - start;
    msgpack::Map out;
    for (auto& [slot, data] : outputs) out.emplace_back(slot, Value::bin(std::move(data)));
    return Value::map({{"ns", Value::unsigned_integer(ns)}, {"returned", Value::bin(std::move(returned))},
                       {"outputs", Value::map(std::move(out))}});
}

Value run(const std::string& op, const msgpack::Map& in) {
    if (op == "bench") return bench(in);
    if (op == "run_function") return run_function(in);
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
