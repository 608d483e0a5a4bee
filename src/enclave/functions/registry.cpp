#include "functions/registry.hpp"

#include <algorithm>
#include <cmath>
#include <sstream>

namespace mesatee::functions {
namespace {

using msgpack::Value;

// Filled by the Registration objects of each function's file, before any ecall runs.
std::vector<const Function*>& catalog() {
    static std::vector<const Function*> all;
    return all;
}

std::map<const Function*, SlotCheck>& slot_checks() {
    static std::map<const Function*, SlotCheck> checks;
    return checks;
}

const char* type_name(ArgType t) {
    switch (t) {
        case ArgType::String: return "string";
        case ArgType::Int: return "int";
        case ArgType::Float: return "float";
        case ArgType::Bool: return "bool";
        case ArgType::Bytes: return "bytes";
    }
    return "?";
}

[[noreturn]] void bad_argument(const Function& fn, const std::string& why) {
    fail(MESATEE_ERROR_ARGUMENT_INVALID, fn.name + ": " + why);
}

Value check_argument(const Function& fn, const ArgumentDecl& decl, const Value& v) {
    const std::string what = "argument " + decl.name;
    double measure = 0;
    switch (decl.type) {
        case ArgType::String:
            if (!v.is(Value::Type::Str)) bad_argument(fn, what + " must be a string");
            measure = static_cast<double>(v.as_str(what).size());
            if (!decl.choices.empty() &&
                std::find(decl.choices.begin(), decl.choices.end(), v.as_str(what)) == decl.choices.end()) {
                std::string allowed;
                for (const std::string& c : decl.choices) allowed += (allowed.empty() ? "" : ", ") + c;
                bad_argument(fn, what + " must be one of: " + allowed);
            }
            break;
        case ArgType::Int:
            if (!v.is(Value::Type::Int) || (!v.negative() && v.as_uint(what) > INT64_MAX))
                bad_argument(fn, what + " must be an integer");
            measure = static_cast<double>(v.as_int(what));
            break;
        case ArgType::Float:
            if (!v.is(Value::Type::Float) && !v.is(Value::Type::Int)) bad_argument(fn, what + " must be a number");
            measure = v.as_number(what);
            if (!std::isfinite(measure)) bad_argument(fn, what + " must be finite");
            break;
        case ArgType::Bool:
            if (!v.is(Value::Type::Bool)) bad_argument(fn, what + " must be true or false");
            return v;
        case ArgType::Bytes:
            if (!v.is(Value::Type::Bin)) bad_argument(fn, what + " must be bytes");
            measure = static_cast<double>(v.as_bin(what).size());
            break;
    }
    bool sized = decl.type == ArgType::String || decl.type == ArgType::Bytes;
    auto bound = [&](double b) {
        std::ostringstream text;
        text << b << (sized ? " bytes long" : "");
        return text.str();
    };
    if (decl.min && measure < *decl.min) bad_argument(fn, what + " must be at least " + bound(*decl.min));
    if (decl.max && measure > *decl.max) bad_argument(fn, what + " must be at most " + bound(*decl.max));
    return decl.type == ArgType::Float ? Value::real(measure) : v;
}

}  // namespace

Registration::Registration(const Function& fn, SlotCheck check) {
    if (check) slot_checks()[&fn] = check;
    auto& all = catalog();
    auto at = std::lower_bound(all.begin(), all.end(), &fn, [](const Function* a, const Function* b) {
        return a->name != b->name ? a->name < b->name : a->version < b->version;
    });
    all.insert(at, &fn);
}

const Value& Arguments::get(const std::string& name) const {
    auto it = values_.find(name);
    if (it == values_.end()) fail(MESATEE_ERROR_INTERNAL, "undeclared argument " + name);
    return it->second;
}
const std::string& Arguments::str(const std::string& name) const { return get(name).as_str(name); }
int64_t Arguments::integer(const std::string& name) const { return get(name).as_int(name); }
double Arguments::number(const std::string& name) const { return get(name).as_number(name); }
bool Arguments::boolean(const std::string& name) const { return get(name).as_bool(name); }
const Bytes& Arguments::bytes(const std::string& name) const { return get(name).as_bin(name); }

const Function& find(const std::string& name, int64_t version) {
    for (const Function* fn : catalog())
        if (fn->name == name && fn->version == version) return *fn;
    for (const Function* fn : catalog())
        if (fn->name == name)
            fail(MESATEE_ERROR_FUNCTION_UNKNOWN, "function " + name + " has no version " + std::to_string(version));
    fail(MESATEE_ERROR_FUNCTION_UNKNOWN, "no built-in function is called \"" + name.substr(0, 64) + "\"");
}

Arguments validate_arguments(const Function& fn, const msgpack::Map& given) {
    for (const auto& [name, value] : given) {
        (void)value;
        bool declared = std::any_of(fn.arguments.begin(), fn.arguments.end(), [&](const auto& d) { return d.name == name; });
        if (!declared) bad_argument(fn, "unknown argument " + name.substr(0, 64));
    }
    Arguments args;
    for (const ArgumentDecl& decl : fn.arguments) {
        const Value* v = msgpack::find(given, decl.name);
        if (!v && !decl.default_value) bad_argument(fn, "missing required argument " + decl.name);
        args.set(decl.name, check_argument(fn, decl, v ? *v : *decl.default_value));
    }
    return args;
}

void validate_slots(const Function& fn, const Arguments& args, const std::vector<std::string>& inputs,
                    const std::vector<std::string>& outputs) {
    auto compare = [&](const std::vector<SlotDecl>& declared, const std::vector<std::string>& named, const char* kind) {
        for (const std::string& n : named)
            if (std::none_of(declared.begin(), declared.end(), [&](const SlotDecl& d) { return d.name == n; }))
                fail(MESATEE_ERROR_MANIFEST_INVALID, fn.name + " has no " + kind + " slot " + n);
        for (const SlotDecl& d : declared)
            if (!d.optional && std::find(named.begin(), named.end(), d.name) == named.end())
                fail(MESATEE_ERROR_MANIFEST_INVALID, fn.name + " needs the " + kind + " slot " + d.name);
    };
    compare(fn.inputs, inputs, "input");
    compare(fn.outputs, outputs, "output");
    auto check = slot_checks().find(&fn);
    if (check != slot_checks().end()) check->second(args, inputs, outputs);
}

Bytes declarations() {
    msgpack::Array functions;
    auto slots = [](const std::vector<SlotDecl>& decls) {
        msgpack::Array out;
        for (const SlotDecl& s : decls)
            out.push_back(Value::map({{"name", Value::str(s.name)}, {"optional", Value::boolean(s.optional)},
                                      {"doc", Value::str(s.doc)}}));
        return Value::array(std::move(out));
    };
    for (const Function* fn : catalog()) {
        msgpack::Array arguments;
        for (const ArgumentDecl& a : fn->arguments) {
            msgpack::Map m{{"name", Value::str(a.name)}, {"type", Value::str(type_name(a.type))},
                           {"required", Value::boolean(!a.default_value)}, {"doc", Value::str(a.doc)}};
            if (a.default_value) m.emplace_back("default", *a.default_value);
            if (a.min) m.emplace_back("min", Value::real(*a.min));
            if (a.max) m.emplace_back("max", Value::real(*a.max));
            if (!a.choices.empty()) {
                msgpack::Array choices;
                for (const std::string& c : a.choices) choices.push_back(Value::str(c));
                m.emplace_back("choices", Value::array(std::move(choices)));
            }
            arguments.push_back(Value::map(std::move(m)));
        }
        functions.push_back(Value::map({{"name", Value::str(fn->name)},
                                        {"version", Value::integer(fn->version)},
                                        {"doc", Value::str(fn->doc)},
                                        {"arguments", Value::array(std::move(arguments))},
                                        {"inputs", slots(fn->inputs)},
                                        {"outputs", slots(fn->outputs)}}));
    }
    return msgpack::encode(Value::array(std::move(functions)));
}

}  // namespace mesatee::functions
