#include "msgpack.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace mesatee::msgpack {
namespace {

[[noreturn]] void type_error(const std::string& what, const char* expected) {
    fail(MESATEE_ERROR_FORMAT, what + ": expected " + expected);
}

bool valid_utf8(const std::string& s) {
    size_t i = 0, n = s.size();
    const auto* p = reinterpret_cast<const unsigned char*>(s.data());
    while (i < n) {
        unsigned char c = p[i];
        size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (len == 0 || i + len > n) return false;
        uint32_t cp = len == 1 ? c : len == 2 ? c & 0x1f : len == 3 ? c & 0x0f : c & 0x07;
        for (size_t k = 1; k < len; ++k) {
            if ((p[i + k] & 0xc0) != 0x80) return false;
            cp = (cp << 6) | (p[i + k] & 0x3f);
        }
        // no overlong forms, no surrogates, nothing past U+10FFFF
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += len;
    }
    return true;
}

class Decoder {
public:
    Decoder(ByteView data, const char* what, const Limits& limits) : r_(data, what), what_(what), limits_(limits) {}

    Value value(size_t depth) {
        if (depth > limits_.max_depth) reject("nested deeper than " + std::to_string(limits_.max_depth));
        size_t at = r_.offset();
        uint8_t b = r_.u8("type");
        if (b <= 0x7f) return Value::unsigned_integer(b);
        if (b >= 0xe0) return Value::integer(static_cast<int8_t>(b));
        if ((b & 0xf0) == 0x80) return map(b & 0x0f, depth);
        if ((b & 0xf0) == 0x90) return array(b & 0x0f, depth);
        if ((b & 0xe0) == 0xa0) return str(b & 0x1f);
        switch (b) {
            case 0xc0: return Value();
            case 0xc2: return Value::boolean(false);
            case 0xc3: return Value::boolean(true);
            case 0xc4: return bin(len(1, -1, at));
            case 0xc5: return bin(len(2, 0xff, at));
            case 0xc6: return bin(len(4, 0xffff, at));
            case 0xcb: {
                uint64_t bits = be(8);
                double d;
                std::memcpy(&d, &bits, 8);
                if (std::isnan(d)) reject_at(at, "NaN is not allowed");
                return Value::real(d);
            }
            case 0xcc: return uint_of(1, 0x7f, at);
            case 0xcd: return uint_of(2, 0xff, at);
            case 0xce: return uint_of(4, 0xffff, at);
            case 0xcf: return uint_of(8, 0xffffffff, at);
            case 0xd0: return int_of(1, -32, at);
            case 0xd1: return int_of(2, -128, at);
            case 0xd2: return int_of(4, -32768, at);
            case 0xd3: return int_of(8, -2147483648LL, at);
            case 0xd9: return str(len(1, 31, at));
            case 0xda: return str(len(2, 0xff, at));
            case 0xdb: return str(len(4, 0xffff, at));
            case 0xdc: return array(len(2, 15, at), depth);
            case 0xdd: return array(len(4, 0xffff, at), depth);
            case 0xde: return map(len(2, 15, at), depth);
            case 0xdf: return map(len(4, 0xffff, at), depth);
            default: reject_at(at, "type byte 0x" + hex(ByteView(&b, 1)) + " is not allowed (float32, ext or reserved)");
        }
    }

    void end() { r_.expect_end(); }

private:
    uint64_t be(size_t n) {
        ByteView v = r_.take(n, "number");
        uint64_t x = 0;
        for (size_t i = 0; i < n; ++i) x = (x << 8) | v.data[i];
        return x;
    }
    // A length that a shorter header could have held is not canonical (-1: no shorter header exists).
    size_t len(size_t n, int64_t shorter_max, size_t at) {
        uint64_t x = be(n);
        if (shorter_max >= 0 && x <= static_cast<uint64_t>(shorter_max))
            reject_at(at, "length " + std::to_string(x) + " is not in its shortest form");
        return static_cast<size_t>(x);
    }
    Value uint_of(size_t n, uint64_t shorter_max, size_t at) {
        uint64_t x = be(n);
        if (x <= shorter_max) reject_at(at, "integer " + std::to_string(x) + " is not in its shortest form");
        return Value::unsigned_integer(x);
    }
    Value int_of(size_t n, int64_t shorter_min, size_t at) {
        uint64_t raw = be(n);
        int64_t x = n == 1 ? static_cast<int8_t>(raw) : n == 2 ? static_cast<int16_t>(raw)
                  : n == 4 ? static_cast<int32_t>(raw) : static_cast<int64_t>(raw);
        if (x >= shorter_min) reject_at(at, "integer " + std::to_string(x) + " is not in its shortest form");
        return Value::integer(x);
    }
    Value str(size_t n) {
        ByteView v = r_.take(n, "string");
        std::string s(reinterpret_cast<const char*>(v.data), v.size);
        if (!valid_utf8(s)) reject("a string is not valid UTF-8");
        return Value::str(std::move(s));
    }
    Value bin(size_t n) { return Value::bin(r_.take(n, "bytes").to_bytes()); }
    Value array(size_t n, size_t depth) {
        count(n);
        Array a;  // no reserve: nested headers would each reserve before any element exists
        for (size_t i = 0; i < n; ++i) a.push_back(value(depth + 1));
        return Value::array(std::move(a));
    }
    Value map(size_t n, size_t depth) {
        count(n);
        Map m;
        for (size_t i = 0; i < n; ++i) {
            size_t at = r_.offset();
            Value key = value(depth + 1);
            if (!key.is(Value::Type::Str)) reject_at(at, "map keys must be strings");
            const std::string& k = key.as_str("key");
            if (!m.empty() && !(m.back().first < k))
                reject_at(at, "map key \"" + k.substr(0, 64) + "\" is out of order or repeated");
            Value v = value(depth + 1);
            m.emplace_back(k, std::move(v));
        }
        Value out;
        out = Value::map(std::move(m));
        return out;
    }
    void count(size_t n) {
        if (n > limits_.max_elements) reject("a container has more than " + std::to_string(limits_.max_elements) + " elements");
        if (n > r_.remaining()) reject("a container claims more elements than the data holds");
    }
    [[noreturn]] void reject(const std::string& why) { fail(MESATEE_ERROR_FORMAT, std::string(what_) + ": " + why); }
    [[noreturn]] void reject_at(size_t at, const std::string& why) {
        reject(why + " (at offset " + std::to_string(at) + ")");
    }

    Reader r_;
    const char* what_;
    const Limits& limits_;
};

void put_be(Bytes& out, uint8_t tag, uint64_t x, size_t n) {
    out.push_back(tag);
    for (size_t i = n; i-- > 0;) out.push_back(static_cast<uint8_t>(x >> (8 * i)));
}

void put_len(Bytes& out, size_t n, uint8_t fix, size_t fix_max, uint8_t t8, uint8_t t16, uint8_t t32) {
    if (n <= fix_max) out.push_back(static_cast<uint8_t>(fix | n));
    else if (t8 && n <= 0xff) put_be(out, t8, n, 1);
    else if (n <= 0xffff) put_be(out, t16, n, 2);
    else put_be(out, t32, n, 4);
}

}  // namespace

Value Value::boolean(bool b) { Value v; v.type_ = Type::Bool; v.bool_ = b; return v; }
Value Value::integer(int64_t i) {
    if (i >= 0) return unsigned_integer(static_cast<uint64_t>(i));
    Value v; v.type_ = Type::Int; v.negative_ = true; v.int_ = i; return v;
}
Value Value::unsigned_integer(uint64_t u) { Value v; v.type_ = Type::Int; v.uint_ = u; return v; }
Value Value::real(double d) { Value v; v.type_ = Type::Float; v.float_ = d; return v; }
Value Value::str(std::string s) { Value v; v.type_ = Type::Str; v.str_ = std::move(s); return v; }
Value Value::bin(Bytes b) { Value v; v.type_ = Type::Bin; v.bin_ = std::move(b); return v; }
Value Value::array(Array a) { Value v; v.type_ = Type::Array; v.array_ = std::make_shared<Array>(std::move(a)); return v; }
Value Value::map(Map m) {
    std::sort(m.begin(), m.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    for (size_t i = 1; i < m.size(); ++i)
        if (m[i - 1].first == m[i].first) fail(MESATEE_ERROR_INTERNAL, "duplicate map key " + m[i].first);
    Value v; v.type_ = Type::Map; v.map_ = std::make_shared<Map>(std::move(m)); return v;
}

bool Value::as_bool(const std::string& what) const {
    if (type_ != Type::Bool) type_error(what, "a boolean");
    return bool_;
}
int64_t Value::as_int(const std::string& what) const {
    if (type_ != Type::Int) type_error(what, "an integer");
    if (negative_) return int_;
    if (uint_ > static_cast<uint64_t>(INT64_MAX)) fail(MESATEE_ERROR_FORMAT, what + ": integer out of range");
    return static_cast<int64_t>(uint_);
}
uint64_t Value::as_uint(const std::string& what) const {
    if (type_ != Type::Int || negative_) type_error(what, "a non-negative integer");
    return uint_;
}
double Value::as_number(const std::string& what) const {
    if (type_ == Type::Float) return float_;
    if (type_ == Type::Int) return negative_ ? static_cast<double>(int_) : static_cast<double>(uint_);
    type_error(what, "a number");
}
const std::string& Value::as_str(const std::string& what) const {
    if (type_ != Type::Str) type_error(what, "a string");
    return str_;
}
const Bytes& Value::as_bin(const std::string& what) const {
    if (type_ != Type::Bin) type_error(what, "bytes");
    return bin_;
}
const Array& Value::as_array(const std::string& what) const {
    if (type_ != Type::Array) type_error(what, "an array");
    return *array_;
}
const Map& Value::as_map(const std::string& what) const {
    if (type_ != Type::Map) type_error(what, "a map");
    return *map_;
}

const Value* find(const Map& map, const std::string& key) {
    auto it = std::lower_bound(map.begin(), map.end(), key, [](const auto& e, const std::string& k) { return e.first < k; });
    return it != map.end() && it->first == key ? &it->second : nullptr;
}

const Value& require(const Map& map, const std::string& key, const std::string& what) {
    const Value* v = find(map, key);
    if (!v) fail(MESATEE_ERROR_FORMAT, what + ": missing " + key);
    return *v;
}

void only_keys(const Map& map, std::initializer_list<const char*> allowed, const std::string& what) {
    for (const auto& [key, value] : map) {
        (void)value;
        if (std::none_of(allowed.begin(), allowed.end(), [&](const char* a) { return key == a; }))
            fail(MESATEE_ERROR_FORMAT, what + ": unknown field " + key.substr(0, 64));
    }
}

Value decode(ByteView data, const char* what, const Limits& limits) {
    if (data.size > limits.max_size)
        fail(MESATEE_ERROR_FORMAT, std::string(what) + ": larger than " + std::to_string(limits.max_size) + " bytes");
    Decoder d(data, what, limits);
    Value v = d.value(0);
    d.end();
    return v;
}

void encode_to(const Value& v, Bytes& out) {
    switch (v.type()) {
        case Value::Type::Nil: out.push_back(0xc0); break;
        case Value::Type::Bool: out.push_back(v.as_bool("") ? 0xc3 : 0xc2); break;
        case Value::Type::Int:
            if (v.negative()) {
                int64_t x = v.as_int("");
                if (x >= -32) out.push_back(static_cast<uint8_t>(x));
                else if (x >= -128) put_be(out, 0xd0, static_cast<uint64_t>(x), 1);
                else if (x >= -32768) put_be(out, 0xd1, static_cast<uint64_t>(x), 2);
                else if (x >= -2147483648LL) put_be(out, 0xd2, static_cast<uint64_t>(x), 4);
                else put_be(out, 0xd3, static_cast<uint64_t>(x), 8);
            } else {
                uint64_t x = v.as_uint("");
                if (x <= 0x7f) out.push_back(static_cast<uint8_t>(x));
                else if (x <= 0xff) put_be(out, 0xcc, x, 1);
                else if (x <= 0xffff) put_be(out, 0xcd, x, 2);
                else if (x <= 0xffffffff) put_be(out, 0xce, x, 4);
                else put_be(out, 0xcf, x, 8);
            }
            break;
        case Value::Type::Float: {
            double d = v.as_number("");
            uint64_t bits;
            std::memcpy(&bits, &d, 8);
            put_be(out, 0xcb, bits, 8);
            break;
        }
        case Value::Type::Str: {
            const std::string& s = v.as_str("");
            put_len(out, s.size(), 0xa0, 31, 0xd9, 0xda, 0xdb);
            out.insert(out.end(), s.begin(), s.end());
            break;
        }
        case Value::Type::Bin: {
            const Bytes& b = v.as_bin("");
            if (b.size() <= 0xff) put_be(out, 0xc4, b.size(), 1);
            else if (b.size() <= 0xffff) put_be(out, 0xc5, b.size(), 2);
            else put_be(out, 0xc6, b.size(), 4);
            out.insert(out.end(), b.begin(), b.end());
            break;
        }
        case Value::Type::Array: {
            const Array& a = v.as_array("");
            put_len(out, a.size(), 0x90, 15, 0, 0xdc, 0xdd);
            for (const Value& e : a) encode_to(e, out);
            break;
        }
        case Value::Type::Map: {
            const Map& m = v.as_map("");
            put_len(out, m.size(), 0x80, 15, 0, 0xde, 0xdf);
            for (const auto& [k, e] : m) {
                encode_to(Value::str(k), out);
                encode_to(e, out);
            }
            break;
        }
    }
}

Bytes encode(const Value& value) {
    Bytes out;
    encode_to(value, out);
    return out;
}

}  // namespace mesatee::msgpack
