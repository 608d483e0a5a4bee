#include "task.hpp"

#include <algorithm>

#include "enclave_state.hpp"
#include "files.hpp"
#include "functions/registry.hpp"
#include "hpke.hpp"
#include "manifest.hpp"
#include "platform/platform.hpp"

namespace mesatee {
namespace {

using msgpack::Value;

constexpr char kGrantLabel[] = "mesatee/grant/v1";
constexpr char kOutputKeyLabel[] = "mesatee/output-key/v1";
constexpr char kReturnValueLabel[] = "mesatee/return-value/v1";
constexpr char kApprovalLabel[] = "mesatee/approval/v1";
constexpr char kReceiptLabel[] = "mesatee/receipt/v1";
constexpr size_t kReturnValueBucket = 256;

Bytes concat(std::initializer_list<ByteView> parts) {
    Bytes out;
    for (ByteView p : parts) out.insert(out.end(), p.data, p.data + p.size);
    return out;
}

// label ‖ manifest_hash ‖ u16 len ‖ slot
Bytes slot_info(const char* label, const Bytes& manifest_hash, const std::string& slot) {
    Bytes out = concat({literal(label), manifest_hash});
    Writer(out).u16(static_cast<uint16_t>(slot.size())).text(slot.c_str());
    return out;
}

bool ed25519_verify(ByteView public_key, ByteView message, ByteView signature) {
    if (signature.size != 64) return false;
    PkeyPtr key(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, public_key.data, public_key.size));
    MdCtxPtr ctx(EVP_MD_CTX_new());
    bool ok = key && ctx && EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, key.get()) == 1 &&
              EVP_DigestVerify(ctx.get(), signature.data, 64, message.data, message.size) == 1;
    ERR_clear_error();
    return ok;
}

void check_enclave_accepted(const Manifest& m) {
    const EnclaveIdentity& me = platform::identity();
    for (const EnclaveRequirement& r : m.enclaves) {
        if (r.mrenclave && ByteView(*r.mrenclave) == ByteView(me.mrenclave)) return;
        // A debug build is only ever accepted by its exact measurement.
        if (r.mrsigner && !me.debug && ByteView(*r.mrsigner) == ByteView(me.mrsigner) && r.product_id == me.product_id &&
            me.security_version >= r.min_security_version)
            return;
    }
    fail(MESATEE_ERROR_ENCLAVE_NOT_ACCEPTED, "the manifest does not accept this enclave (mrenclave " +
                                                 hex(me.mrenclave) + ", security version " +
                                                 std::to_string(me.security_version) + ")");
}

void check_approvals(const Manifest& m, const msgpack::Map& approvals) {
    Bytes message = concat({literal(kApprovalLabel), m.hash});
    for (const auto& [id_hex, signature] : approvals)
        if (std::none_of(m.participants.begin(), m.participants.end(), [&](const Participant& p) { return p.id_hex == id_hex; }))
            fail(MESATEE_ERROR_APPROVAL_INVALID, "an approval comes from " + id_hex.substr(0, 64) + ", who is not a participant");
    for (const Participant& p : m.participants)
        if (!msgpack::find(approvals, p.id_hex))
            fail(MESATEE_ERROR_APPROVAL_MISSING, "participant " + p.id_hex + " has not approved this manifest");
    for (const Participant& p : m.participants) {
        const Value* signature = msgpack::find(approvals, p.id_hex);
        if (!signature->is(Value::Type::Bin) || !ed25519_verify(p.signing_key, message, signature->as_bin("approval")))
            fail(MESATEE_ERROR_APPROVAL_INVALID,
                 "the approval of participant " + p.id_hex + " does not verify for this manifest");
    }
}

struct FileKey {
    SecretBytes key;
    Bytes iv;
};

FileKey open_grant(const EnclaveState& state, const Manifest& m, const InputSlot& slot, const Value* grant) {
    if (!grant || !grant->is(Value::Type::Bin))
        fail(MESATEE_ERROR_GRANT_INVALID, "no grant for input " + slot.name);
    Bytes plain;
    try {
        plain = hpke::open(grant->as_bin("grant"), state.hpke_private_key(), state.hpke_public_key(),
                           slot_info(kGrantLabel, m.hash, slot.name), "the grant for input " + slot.name);
    } catch (const Error& e) {
        fail(MESATEE_ERROR_GRANT_INVALID, e.what());
    }
    FileKey out{SecretBytes(0), {}};
    try {
        Value v = msgpack::decode(plain, "grant");
        const msgpack::Map& g = v.as_map("grant");
        bool teaclave = slot.format != "mesatee-v1";
        if (teaclave) msgpack::only_keys(g, {"iv", "key"}, "grant");
        else msgpack::only_keys(g, {"key"}, "grant");
        const Bytes& key = msgpack::require(g, "key", "grant").as_bin("grant key");
        size_t expected = slot.format == "teaclave-aes-gcm-128" ? 16 : 32;
        if (key.size() != expected) fail(MESATEE_ERROR_FORMAT, "key must be " + std::to_string(expected) + " bytes");
        out.key = SecretBytes(key.size());
        std::memcpy(out.key.data(), key.data(), key.size());
        if (teaclave) {
            out.iv = msgpack::require(g, "iv", "grant").as_bin("grant iv");
            if (out.iv.size() != 12) fail(MESATEE_ERROR_FORMAT, "iv must be 12 bytes");
        }
    } catch (const Error& e) {
        OPENSSL_cleanse(plain.data(), plain.size());
        fail(MESATEE_ERROR_GRANT_INVALID, "the grant for input " + slot.name + " is malformed: " + e.what());
    }
    OPENSSL_cleanse(plain.data(), plain.size());
    return out;
}

Bytes open_input(const InputSlot& slot, const FileKey& key, const Value* file) {
    if (!file || !file->is(Value::Type::Bin)) fail(MESATEE_ERROR_INPUT_MISMATCH, "input " + slot.name + " was not supplied");
    const Bytes& ciphertext = file->as_bin("input");
    if (ByteView(sha256(ciphertext)) != ByteView(slot.dataset_id))
        fail(MESATEE_ERROR_INPUT_MISMATCH, "input " + slot.name + " does not match its dataset id " + hex(slot.dataset_id));
    try {
        if (slot.format == "mesatee-v1") return files::decrypt_file(key.key.view(), ciphertext, "input " + slot.name);
        return files::decrypt_teaclave(key.key.view(), key.iv, ciphertext, "input " + slot.name);
    } catch (const Error& e) {
        fail(MESATEE_ERROR_INPUT_INVALID, e.what());
    }
}

// Slots of a manifest map, in order; refuses entries the manifest does not name.
void only_slots(const msgpack::Map& given, const std::vector<InputSlot>& slots, mesatee_status status, const char* what) {
    for (const auto& [name, value] : given) {
        (void)value;
        if (std::none_of(slots.begin(), slots.end(), [&](const InputSlot& s) { return s.name == name; }))
            fail(status, std::string(what) + " for " + name.substr(0, 64) + ", which is not an input of this task");
    }
}

}  // namespace

Bytes invoke(const EnclaveState& state, ByteView invocation) {
    // Streaming inputs from host storage will replace the in-memory `inputs` map here.
    msgpack::Value request = msgpack::decode(invocation, "invocation");
    const msgpack::Map& r = request.as_map("invocation");
    msgpack::only_keys(r, {"approvals", "grants", "inputs", "manifest", "now"}, "invocation");
    const Bytes& manifest_bytes = msgpack::require(r, "manifest", "invocation").as_bin("manifest");
    const msgpack::Map& approvals = msgpack::require(r, "approvals", "invocation").as_map("approvals");
    const msgpack::Map& grants = msgpack::require(r, "grants", "invocation").as_map("grants");
    const msgpack::Map& inputs = msgpack::require(r, "inputs", "invocation").as_map("inputs");
    int64_t now = msgpack::require(r, "now", "invocation").as_int("now");

    Manifest m = parse_manifest(manifest_bytes);
    // The host's clock is untrusted: this only lets an honest host stop expired work.
    if (now > m.expires_at) fail(MESATEE_ERROR_MANIFEST_EXPIRED, "the manifest expired at " + std::to_string(m.expires_at));
    check_enclave_accepted(m);
    check_approvals(m, approvals);
    const functions::Function& fn = functions::find(m.function_name, m.function_version);
    functions::Arguments args = functions::validate_arguments(fn, m.arguments);
    std::vector<std::string> input_names, output_names;
    for (const InputSlot& s : m.inputs) input_names.push_back(s.name);
    for (const OutputSlot& s : m.outputs) output_names.push_back(s.name);
    functions::validate_slots(fn, args, input_names, output_names);

    only_slots(grants, m.inputs, MESATEE_ERROR_GRANT_INVALID, "a grant");
    only_slots(inputs, m.inputs, MESATEE_ERROR_INPUT_MISMATCH, "a file");
    functions::Inputs plaintexts;
    functions::Outputs produced;
    // Decrypted inputs and outputs are wiped however this function ends.
    struct Wipe {
        functions::Inputs& a;
        functions::Outputs& b;
        ~Wipe() {
            for (auto* m : {&a, &b})
                for (auto& [slot, data] : *m) OPENSSL_cleanse(data.data(), data.size());
        }
    } wipe{plaintexts, produced};
    for (const InputSlot& slot : m.inputs) {
        FileKey key = open_grant(state, m, slot, msgpack::find(grants, slot.name));
        plaintexts[slot.name] = open_input(slot, key, msgpack::find(inputs, slot.name));
    }

    Bytes return_value;
    try {
        return_value = fn.run(args, plaintexts, produced);
    } catch (const Error& e) {
        if (e.status() == MESATEE_ERROR_FUNCTION_FAILED || e.status() == MESATEE_ERROR_INPUT_INVALID ||
            e.status() == MESATEE_ERROR_ARGUMENT_INVALID)
            throw;
        fail(MESATEE_ERROR_FUNCTION_FAILED, fn.name + " failed: " + e.what());
    }

    msgpack::Map outputs, receipt_outputs;
    for (const OutputSlot& slot : m.outputs) {
        auto it = produced.find(slot.name);
        if (it == produced.end()) fail(MESATEE_ERROR_FUNCTION_FAILED, fn.name + " produced no " + slot.name);
        SecretBytes key(32);
        random_bytes(key.data(), 32);
        Bytes file = files::encrypt_file(key.view(), it->second);
        msgpack::Map keys;
        Bytes info = slot_info(kOutputKeyLabel, m.hash, slot.name);
        for (const Bytes& owner : slot.owners)
            keys.emplace_back(hex(owner), Value::bin(hpke::seal(m.participant(owner)->hpke_key, info, key.view())));
        receipt_outputs.emplace_back(slot.name, Value::bin(sha256(file)));
        outputs.emplace_back(slot.name, Value::map({{"file", Value::bin(std::move(file))}, {"keys", Value::map(std::move(keys))}}));
    }

    // Padded to a bucket: the ciphertext's length must not tell the host the answer ("true" or "false").
    if (return_value.size() > UINT32_MAX - kReturnValueBucket)
        fail(MESATEE_ERROR_FUNCTION_FAILED, fn.name + " returned more than 4 GiB");
    Bytes padded;
    padded.reserve((return_value.size() + 4) / kReturnValueBucket * kReturnValueBucket + kReturnValueBucket);
    Writer(padded).u8(static_cast<uint8_t>(return_value.size() >> 24)).u8(static_cast<uint8_t>(return_value.size() >> 16))
        .u8(static_cast<uint8_t>(return_value.size() >> 8)).u8(static_cast<uint8_t>(return_value.size())).bytes(return_value);
    padded.resize((padded.size() + kReturnValueBucket - 1) / kReturnValueBucket * kReturnValueBucket, 0);
    msgpack::Map returned, receipt_returned;
    Bytes return_info = concat({literal(kReturnValueLabel), m.hash});
    for (const Participant& p : m.participants) {
        Bytes sealed = hpke::seal(p.hpke_key, return_info, padded);
        receipt_returned.emplace_back(p.id_hex, Value::bin(sha256(sealed)));
        returned.emplace_back(p.id_hex, Value::bin(std::move(sealed)));
    }
    OPENSSL_cleanse(return_value.data(), return_value.size());
    OPENSSL_cleanse(padded.data(), padded.size());

    const EnclaveIdentity& me = platform::identity();
    Bytes receipt = msgpack::encode(Value::map({
        {"version", Value::integer(1)},
        {"manifest_hash", Value::bin(m.hash)},
        {"status", Value::str("ok")},
        {"outputs", Value::map(std::move(receipt_outputs))},
        {"return_value", Value::map(std::move(receipt_returned))},
        {"enclave", Value::map({{"mrenclave", Value::bin(me.mrenclave)},
                                {"mrsigner", Value::bin(me.mrsigner)},
                                {"product_id", Value::integer(me.product_id)},
                                {"security_version", Value::integer(me.security_version)}})},
    }));
    Bytes signature = state.sign(concat({literal(kReceiptLabel), sha256(receipt)}));
    return msgpack::encode(Value::map({{"receipt", Value::bin(std::move(receipt))},
                                       {"signature", Value::bin(std::move(signature))},
                                       {"outputs", Value::map(std::move(outputs))},
                                       {"return_value", Value::map(std::move(returned))}}));
}

}  // namespace mesatee
