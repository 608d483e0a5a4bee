// The built-in function catalog: each function declares its arguments (type,
// default, bounds, choices), inputs and outputs; a request is validated
// against the declaration before the function runs.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "msgpack.hpp"

namespace mesatee::functions {

enum class ArgType { String, Int, Float, Bool, Bytes };

struct ArgumentDecl {
    std::string name;
    ArgType type;
    std::optional<msgpack::Value> default_value;  // none: required
    std::optional<double> min, max;                // numbers: value bounds; strings and bytes: length bounds
    std::vector<std::string> choices;              // strings: the allowed values, when not empty
    std::string doc;
};

struct SlotDecl {
    std::string name;
    bool optional = false;
    std::string doc;
};

// Arguments after validation: every declared one present (given or default), of its type.
class Arguments {
public:
    const std::string& str(const std::string& name) const;
    int64_t integer(const std::string& name) const;
    double number(const std::string& name) const;
    bool boolean(const std::string& name) const;
    const Bytes& bytes(const std::string& name) const;
    void set(const std::string& name, msgpack::Value v) { values_[name] = std::move(v); }

private:
    const msgpack::Value& get(const std::string& name) const;
    std::map<std::string, msgpack::Value> values_;
};

using Inputs = std::map<std::string, Bytes>;   // slot → plaintext
using Outputs = std::map<std::string, Bytes>;  // slot → plaintext
// Runs the function; returns its return value. Throws FUNCTION_FAILED or INPUT_INVALID.
using Implementation = Bytes (*)(const Arguments&, const Inputs&, Outputs&);

struct Function {
    std::string name;
    int64_t version;
    std::string doc;
    std::vector<ArgumentDecl> arguments;
    std::vector<SlotDecl> inputs, outputs;
    Implementation run;
};

const Function& find(const std::string& name, int64_t version);  // FUNCTION_UNKNOWN
Arguments validate_arguments(const Function& fn, const msgpack::Map& given);  // ARGUMENT_INVALID
// The declared slots against the manifest's: MANIFEST_INVALID on any difference; then the
// function's own slot check, if it registered one.
void validate_slots(const Function& fn, const Arguments& args, const std::vector<std::string>& inputs,
                    const std::vector<std::string>& outputs);
// Every declaration, canonically encoded, for ecall_functions.
Bytes declarations();

// Each built-in registers itself beside its implementation:
//     static const Registration registered(my_function());
// so that adding a function touches no other file.
// A function whose slots depend on its arguments (one input per party, say) declares them all
// optional and registers a check of the manifest's slot names against the validated arguments,
// run before any input is opened; it refuses with ARGUMENT_INVALID naming the problem.
using SlotCheck = void (*)(const Arguments&, const std::vector<std::string>& inputs,
                           const std::vector<std::string>& outputs);
struct Registration {
    explicit Registration(const Function& fn, SlotCheck check = nullptr);
};

}  // namespace mesatee::functions
