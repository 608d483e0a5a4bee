#include "manifest.hpp"

#include <algorithm>
#include <set>

namespace mesatee {
namespace {

constexpr size_t kMaxSlots = 64;
constexpr size_t kMaxParticipants = 64;
constexpr size_t kMaxEnclaves = 16;
constexpr size_t kMaxManifestSize = 1 << 20;

[[noreturn]] void invalid(const std::string& why) { fail(MESATEE_ERROR_MANIFEST_INVALID, "manifest: " + why); }

// Field access turns the codec's FORMAT errors into MANIFEST_INVALID ones.
template <typename Fn>
auto field(Fn&& fn) -> decltype(fn()) {
    try {
        return fn();
    } catch (const Error& e) {
        if (e.status() == MESATEE_ERROR_FORMAT) invalid(e.what());
        throw;
    }
}

Bytes fixed_bin(const msgpack::Value& v, size_t size, const std::string& what) {
    const Bytes& b = field([&]() -> const Bytes& { return v.as_bin(what); });
    if (b.size() != size) invalid(what + " must be " + std::to_string(size) + " bytes");
    return b;
}

uint16_t u16(const msgpack::Value& v, const std::string& what) {
    uint64_t x = field([&] { return v.as_uint(what); });
    if (x > 0xffff) invalid(what + " must fit 16 bits");
    return static_cast<uint16_t>(x);
}

void check_slot_name(const std::string& name, const char* kind) {
    bool ok = !name.empty() && name.size() <= 64 && std::all_of(name.begin(), name.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
               c == '-';
    });
    if (!ok) invalid(std::string(kind) + " slot name \"" + name.substr(0, 64) + "\" is not 1-64 of [A-Za-z0-9_.-]");
}

}  // namespace

const Participant* Manifest::participant(ByteView id) const {
    for (const Participant& p : participants)
        if (ByteView(p.id) == id) return &p;
    return nullptr;
}

Manifest parse_manifest(ByteView encoded) {
    msgpack::Limits limits;
    limits.max_size = kMaxManifestSize;
    msgpack::Value root = field([&] { return msgpack::decode(encoded, "manifest", limits); });
    Manifest m;
    m.hash = sha256(encoded);
    field([&] {
        const msgpack::Map& top = root.as_map("manifest");
        msgpack::only_keys(top, {"arguments", "creator", "enclaves", "expires_at", "function", "inputs", "outputs",
                                 "participants", "task_id", "version"},
                           "manifest");
        auto get = [&](const char* key) -> const msgpack::Value& { return msgpack::require(top, key, "manifest"); };
        if (get("version").as_uint("version") != 1) invalid("unsupported version");
        m.task_id = fixed_bin(get("task_id"), 16, "task_id");
        m.creator = fixed_bin(get("creator"), 32, "creator");
        m.expires_at = get("expires_at").as_int("expires_at");

        const msgpack::Map& fn = get("function").as_map("function");
        msgpack::only_keys(fn, {"name", "owner", "version"}, "function");
        m.function_name = msgpack::require(fn, "name", "function").as_str("function.name");
        m.function_version = msgpack::require(fn, "version", "function").as_int("function.version");
        const msgpack::Value& owner = msgpack::require(fn, "owner", "function");
        if (!owner.is(msgpack::Value::Type::Nil)) m.function_owner = fixed_bin(owner, 32, "function.owner");

        m.arguments = get("arguments").as_map("arguments");

        const msgpack::Map& inputs = get("inputs").as_map("inputs");
        if (inputs.size() > kMaxSlots) invalid("more than 64 inputs");
        for (const auto& [name, spec] : inputs) {
            check_slot_name(name, "input");
            std::string what = "inputs." + name;
            const msgpack::Map& s = spec.as_map(what);
            msgpack::only_keys(s, {"dataset_id", "format", "owner"}, what);
            InputSlot slot{name, fixed_bin(msgpack::require(s, "owner", what), 32, what + ".owner"),
                           fixed_bin(msgpack::require(s, "dataset_id", what), 32, what + ".dataset_id"),
                           msgpack::require(s, "format", what).as_str(what + ".format")};
            if (slot.format != "mesatee-v1" && slot.format != "teaclave-aes-gcm-128" &&
                slot.format != "teaclave-aes-gcm-256")
                invalid(what + ".format \"" + slot.format.substr(0, 64) + "\" is unknown");
            m.inputs.push_back(std::move(slot));
        }

        const msgpack::Map& outputs = get("outputs").as_map("outputs");
        if (outputs.size() > kMaxSlots) invalid("more than 64 outputs");
        for (const auto& [name, spec] : outputs) {
            check_slot_name(name, "output");
            std::string what = "outputs." + name;
            const msgpack::Map& s = spec.as_map(what);
            msgpack::only_keys(s, {"owners"}, what);
            const msgpack::Array& owners = msgpack::require(s, "owners", what).as_array(what + ".owners");
            if (owners.empty() || owners.size() > kMaxParticipants) invalid(what + ".owners must list 1-64 parties");
            OutputSlot slot{name, {}};
            for (const msgpack::Value& o : owners) {
                slot.owners.push_back(fixed_bin(o, 32, what + ".owners[]"));
                if (slot.owners.size() > 1 && !(slot.owners[slot.owners.size() - 2] < slot.owners.back()))
                    invalid(what + ".owners must be sorted and unique");
            }
            m.outputs.push_back(std::move(slot));
        }

        const msgpack::Map& participants = get("participants").as_map("participants");
        if (participants.empty() || participants.size() > kMaxParticipants) invalid("participants must list 1-64 parties");
        for (const auto& [id_hex, keys] : participants) {
            std::string what = "participants." + id_hex.substr(0, 64);
            const msgpack::Map& k = keys.as_map(what);
            msgpack::only_keys(k, {"hpke_key", "signing_key"}, what);
            Participant p;
            p.signing_key = fixed_bin(msgpack::require(k, "signing_key", what), 32, what + ".signing_key");
            p.hpke_key = fixed_bin(msgpack::require(k, "hpke_key", what), 32, what + ".hpke_key");
            p.id = sha256(p.signing_key);
            p.id_hex = hex(p.id);
            if (p.id_hex != id_hex) invalid(what + " is not the SHA-256 of its signing key");
            m.participants.push_back(std::move(p));
        }

        const msgpack::Array& enclaves = get("enclaves").as_array("enclaves");
        if (enclaves.empty() || enclaves.size() > kMaxEnclaves) invalid("enclaves must list 1-16 identities");
        for (const msgpack::Value& e : enclaves) {
            const msgpack::Map& r = e.as_map("enclaves[]");
            EnclaveRequirement req;
            if (const msgpack::Value* mrenclave = msgpack::find(r, "mrenclave")) {
                msgpack::only_keys(r, {"mrenclave"}, "enclaves[]");
                req.mrenclave = fixed_bin(*mrenclave, 32, "enclaves[].mrenclave");
            } else {
                msgpack::only_keys(r, {"min_security_version", "mrsigner", "product_id"}, "enclaves[]");
                req.mrsigner = fixed_bin(msgpack::require(r, "mrsigner", "enclaves[]"), 32, "enclaves[].mrsigner");
                req.product_id = u16(msgpack::require(r, "product_id", "enclaves[]"), "enclaves[].product_id");
                req.min_security_version = u16(msgpack::require(r, "min_security_version", "enclaves[]"),
                                               "enclaves[].min_security_version");
            }
            m.enclaves.push_back(std::move(req));
        }
        return 0;
    });

    // Participants are exactly the parties with a role: no one added, no one left out.
    std::set<Bytes> roles{m.creator};
    for (const InputSlot& s : m.inputs) roles.insert(s.owner);
    for (const OutputSlot& s : m.outputs) roles.insert(s.owners.begin(), s.owners.end());
    if (m.function_owner) roles.insert(*m.function_owner);
    std::set<Bytes> listed;
    for (const Participant& p : m.participants) listed.insert(p.id);
    for (const Bytes& id : roles)
        if (!listed.count(id)) invalid("party " + hex(id) + " has a role but is not a participant");
    for (const Bytes& id : listed)
        if (!roles.count(id)) invalid("participant " + hex(id) + " has no role in the task");
    return m;
}

}  // namespace mesatee
