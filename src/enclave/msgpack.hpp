// Canonical msgpack (docs/formats.md): the only encoding the protocol hashes
// and signs. The decoder refuses every non-canonical form, so that a value has
// exactly one encoding and the SHA-256 of the bytes received is its identity.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/bytes.hpp"

namespace mesatee::msgpack {

class Value;
using Array = std::vector<Value>;
using Map = std::vector<std::pair<std::string, Value>>;  // sorted by key, unique

class Value {
public:
    enum class Type { Nil, Bool, Int, Float, Str, Bin, Array, Map };

    Value() = default;
    static Value boolean(bool b);
    static Value integer(int64_t i);
    static Value unsigned_integer(uint64_t u);
    static Value real(double d);
    static Value str(std::string s);
    static Value bin(Bytes b);
    static Value array(Array a);
    static Value map(Map m);  // sorts the keys; throws on duplicates

    Type type() const { return type_; }
    bool is(Type t) const { return type_ == t; }
    // Typed access: each throws a FORMAT error naming `what` on a type mismatch.
    bool as_bool(const std::string& what) const;
    int64_t as_int(const std::string& what) const;        // must fit int64
    uint64_t as_uint(const std::string& what) const;      // must be non-negative
    double as_number(const std::string& what) const;      // int or float
    const std::string& as_str(const std::string& what) const;
    const Bytes& as_bin(const std::string& what) const;
    const Array& as_array(const std::string& what) const;
    const Map& as_map(const std::string& what) const;
    // For ints: the value as stored (negative values in int_, others in uint_).
    bool negative() const { return negative_; }

private:
    Type type_ = Type::Nil;
    bool bool_ = false;
    bool negative_ = false;
    int64_t int_ = 0;
    uint64_t uint_ = 0;
    double float_ = 0;
    std::string str_;
    Bytes bin_;
    std::shared_ptr<Array> array_;
    std::shared_ptr<Map> map_;
};

// Looks a key up in a map; null when absent.
const Value* find(const Map& map, const std::string& key);
// The value at key, or a FORMAT error "<what>: missing <key>".
const Value& require(const Map& map, const std::string& key, const std::string& what);
// Refuses keys outside the allowed list: "<what>: unknown field <key>".
void only_keys(const Map& map, std::initializer_list<const char*> allowed, const std::string& what);

struct Limits {
    size_t max_size = size_t(1) << 30;
    size_t max_depth = 32;
    size_t max_elements = 1000000;
};

// Decodes exactly one canonical value filling the whole buffer; what names it in errors.
Value decode(ByteView data, const char* what, const Limits& limits = Limits());
// Encodes a value canonically.
Bytes encode(const Value& value);
void encode_to(const Value& value, Bytes& out);

}  // namespace mesatee::msgpack
