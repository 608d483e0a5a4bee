// Strict little-endian reading and writing of the binary formats in
// docs/formats.md. Header-only and free of platform code, so both sides of the
// boundary use it (the host may include trusted headers; never the reverse).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "common/error.hpp"

namespace mesatee {

using Bytes = std::vector<uint8_t>;

struct ByteView {
    const uint8_t* data = nullptr;
    size_t size = 0;
    ByteView() = default;
    ByteView(const uint8_t* d, size_t n) : data(d), size(n) {}
    ByteView(const Bytes& b) : data(b.data()), size(b.size()) {}  // NOLINT: implicit by design
    Bytes to_bytes() const { return Bytes(data, data + size); }
    bool operator==(ByteView o) const { return size == o.size && (size == 0 || std::memcmp(data, o.data, size) == 0); }
    bool operator!=(ByteView o) const { return !(*this == o); }
};

inline std::string hex(ByteView v, size_t max_bytes = 64) {
    static const char digits[] = "0123456789abcdef";
    std::string out;
    for (size_t i = 0; i < v.size && i < max_bytes; ++i) {
        out += digits[v.data[i] >> 4];
        out += digits[v.data[i] & 15];
    }
    if (v.size > max_bytes) out += "...";
    return out;
}

// Reads a buffer front to back; every read is bounds-checked and a failure
// names the format, the field and the offset.
class Reader {
public:
    Reader(ByteView in, const char* what, mesatee_status status = MESATEE_ERROR_FORMAT)
        : in_(in), what_(what), status_(status) {}

    ByteView take(size_t n, const char* field) {
        if (n > in_.size - pos_)
            fail(status_, std::string(what_) + ": truncated at offset " + std::to_string(pos_) + " reading " +
                              field + " (need " + std::to_string(n) + " bytes, " +
                              std::to_string(in_.size - pos_) + " left)");
        ByteView v(in_.data + pos_, n);
        pos_ += n;
        return v;
    }
    void expect(ByteView literal, const char* field) {
        if (take(literal.size, field) != literal)
            fail(status_, std::string(what_) + ": bad " + field + " at offset " + std::to_string(pos_ - literal.size));
    }
    uint8_t u8(const char* f) { return take(1, f).data[0]; }
    uint16_t u16(const char* f) { return static_cast<uint16_t>(le(take(2, f))); }
    uint32_t u32(const char* f) { return static_cast<uint32_t>(le(take(4, f))); }
    uint64_t u64(const char* f) { return le(take(8, f)); }
    size_t offset() const { return pos_; }
    size_t remaining() const { return in_.size - pos_; }
    void expect_end() const {
        if (pos_ != in_.size)
            fail(status_, std::string(what_) + ": " + std::to_string(in_.size - pos_) +
                              " unexpected trailing bytes at offset " + std::to_string(pos_));
    }
    [[noreturn]] void reject(const std::string& why) const { fail(status_, std::string(what_) + ": " + why); }

private:
    static uint64_t le(ByteView v) {
        uint64_t x = 0;
        for (size_t i = v.size; i-- > 0;) x = (x << 8) | v.data[i];
        return x;
    }
    ByteView in_;
    size_t pos_ = 0;
    const char* what_;
    mesatee_status status_;
};

// Appends little-endian fields to a byte vector.
class Writer {
public:
    explicit Writer(Bytes& out) : out_(out) {}
    Writer& bytes(ByteView v) {
        out_.insert(out_.end(), v.data, v.data + v.size);
        return *this;
    }
    Writer& text(const char* s) { return bytes(ByteView(reinterpret_cast<const uint8_t*>(s), std::strlen(s))); }
    Writer& u8(uint8_t x) { return le(x, 1); }
    Writer& u16(uint16_t x) { return le(x, 2); }
    Writer& u32(uint32_t x) { return le(x, 4); }
    Writer& u64(uint64_t x) { return le(x, 8); }

private:
    Writer& le(uint64_t x, int n) {
        for (int i = 0; i < n; ++i) out_.push_back(static_cast<uint8_t>(x >> (8 * i)));
        return *this;
    }
    Bytes& out_;
};

inline ByteView literal(const char* s) { return ByteView(reinterpret_cast<const uint8_t*>(s), std::strlen(s)); }

}  // namespace mesatee
