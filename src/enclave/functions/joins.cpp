// Joins and intersections over several parties' inputs:
//   ordered_set_join          Teaclave's join of two key-sorted CSV files;
//   private_join_and_compute  Teaclave's sum per id over the ids every party holds;
//   private_set_intersection  any number of parties, unsorted inputs, hashing.
// Keys are compared as byte strings. Hash tables hold string_views into the
// decrypted input buffers and are sized once from the input's line count.
#include <algorithm>
#include <charconv>
#include <cstring>
#include <string>
#include <utility>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "common/openssl.hpp"
#include "functions/registry.hpp"
#include "functions/text.hpp"

namespace mesatee::functions {
namespace {

constexpr int64_t kMaxParties = 16;

// ------------------------------------------------------------------ hashing

uint64_t load64(const char* p) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    return w;
}

uint32_t load32(const char* p) {
    uint32_t w;
    std::memcpy(&w, p, 4);
    return w;
}

// A 64-bit hash of byte strings keyed with fresh random bytes, so that hostile inputs cannot
// aim their lines at one bucket; no result depends on the key (outputs are sorted or follow
// the input's order). wyhash's construction: 64 x 64 -> 128-bit multiplies folded to 64 bits,
// 16 bytes a multiply, short strings read as a few overlapping words (no loop, no memcpy
// of a variable length): 3 multiplies for a 32-byte line.
class Hasher {
public:
    Hasher() { random_bytes(reinterpret_cast<uint8_t*>(key_), sizeof key_); }

    uint64_t operator()(std::string_view s) const {
        const char* p = s.data();
        size_t n = s.size();
        uint64_t a = 0, b = 0, seed = key_[0];
        if (n <= 16) {
            if (n >= 4) {
                size_t mid = (n >> 3) << 2;  // 0 below 8 bytes, else 4: the words overlap to cover n bytes
                a = uint64_t{load32(p)} << 32 | load32(p + mid);
                b = uint64_t{load32(p + n - 4)} << 32 | load32(p + n - 4 - mid);
            } else if (n > 0) {
                a = uint64_t{byte(p[0])} << 16 | uint64_t{byte(p[n >> 1])} << 8 | byte(p[n - 1]);
            }
        } else {
            for (; n > 16; p += 16, n -= 16) seed = mix(load64(p) ^ key_[1], load64(p + 8) ^ seed);
            a = load64(p + n - 16);  // the last 16 bytes, overlapping the blocks before
            b = load64(p + n - 8);
        }
        return mix(mix(a ^ key_[1], b ^ seed) ^ key_[2], s.size() ^ key_[1]);
    }

private:
    static uint64_t mix(uint64_t x, uint64_t y) {
        unsigned __int128 r = static_cast<unsigned __int128>(x) * y;
        return static_cast<uint64_t>(r) ^ static_cast<uint64_t>(r >> 64);
    }
    static uint64_t byte(char c) { return static_cast<uint8_t>(c); }

    uint64_t key_[3] = {0, 0, 0};
};

// The items of one party indexed by hashing: open addressing with linear probing, at
// most half full, sized once for the number of items. A slot holds 32 bits of the hash
// and the item's index (the items stay in the input buffer), so the table is 8 bytes a
// slot and probing rarely touches the items themselves.
class ItemIndex {
public:
    static constexpr uint32_t kNone = UINT32_MAX;

    explicit ItemIndex(const std::vector<std::string_view>& items) : items_(items) {
        if (items.size() >= kNone) fail(MESATEE_ERROR_FUNCTION_FAILED, "an input holds more than 2^32 - 2 lines");
        size_t n = 16;
        while (n < 2 * items.size()) n <<= 1;
        slots_.assign(n, 0);
        mask_ = n - 1;
    }

    uint64_t hash(std::string_view s) const { return hash_(s); }

    void prefetch(uint64_t h) const { __builtin_prefetch(&slots_[h & mask_]); }

    // The index of the item equal to items[i] already held, else i (now held).
    uint32_t insert(uint32_t i, uint64_t h) {
        uint64_t tag = h >> 32;
        for (size_t s = h & mask_;; s = (s + 1) & mask_) {
            uint64_t slot = slots_[s];
            if (slot == 0) {
                slots_[s] = tag << 32 | (uint64_t{i} + 1);
                return i;
            }
            uint32_t j = static_cast<uint32_t>(slot) - 1;
            if (slot >> 32 == tag && items_[j] == items_[i]) return j;
        }
    }

    // The index of the held item equal to key, else kNone.
    uint32_t find(std::string_view key, uint64_t h) const {
        uint64_t tag = h >> 32;
        for (size_t s = h & mask_;; s = (s + 1) & mask_) {
            uint64_t slot = slots_[s];
            if (slot == 0) return kNone;
            uint32_t j = static_cast<uint32_t>(slot) - 1;
            if (slot >> 32 == tag && items_[j] == key) return j;
        }
    }

private:
    const std::vector<std::string_view>& items_;
    Hasher hash_;
    std::vector<uint64_t> slots_;
    size_t mask_ = 0;
};

// Calls f(i, hash of keys[i]) for each key in order, hashing and prefetching a few keys ahead.
template <class F>
void for_each_hashed(const ItemIndex& index, const std::vector<std::string_view>& keys, F f) {
    constexpr size_t kAhead = 16;
    uint64_t ring[kAhead];
    size_t n = keys.size();
    for (size_t i = 0; i < n && i < kAhead; ++i) index.prefetch(ring[i] = index.hash(keys[i]));
    for (size_t i = 0; i < n; ++i) {
        uint64_t h = ring[i % kAhead];
        if (i + kAhead < n) index.prefetch(ring[i % kAhead] = index.hash(keys[i + kAhead]));
        f(i, h);
    }
}

// ------------------------------------------------------------------ private_set_intersection's lines

// A line that lines() refuses: the caller reports it as lines() does (same slot, line, problem).
struct Refused {};

struct Line {
    const char* p;
    size_t n;
    uint64_t h;
};

// The lines of one text input, split and checked exactly as lines() does (a single trailing
// newline allowed, "\r\n" too; no empty line, no control character but tab) in one pass that
// looks for the bytes below 0x20 only: '\n' ends a line, '\r' must be followed by '\n' or be
// the last byte, tab is text and any other is refused. Throws Refused where lines() would fail.
class LineScanner {
public:
    explicit LineScanner(const Bytes& input)
        : at_(reinterpret_cast<const char*>(input.data())), end_(at_ + input.size()) {
        if (at_ == end_) throw Refused{};
        if (end_[-1] == '\n') --end_;
    }

    // The bytes the lines span (without the trailing newline).
    const char* begin() const { return at_; }
    const char* end() const { return end_; }

    // The next line, else false at the end.
    bool next(Line& line) {
        if (done_) return false;
        const char* s = at_;
        const char* q = s;
#ifdef __SSE2__
        const __m128i limit = _mm_set1_epi8(0x1f);
        while (end_ - q >= 16) {
            __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q));
            unsigned m = static_cast<unsigned>(_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_min_epu8(x, limit), x)));
            for (; m; m &= m - 1) {
                const char* c = q + __builtin_ctz(m);
                if (*c != '\t') return stop(s, c, line);
            }
            q += 16;
        }
#endif
        for (; q < end_; ++q)
            if (static_cast<unsigned char>(*q) < 0x20 && *q != '\t') return stop(s, q, line);
        if (q == s) throw Refused{};  // an empty last line
        line.p = s;
        line.n = static_cast<size_t>(q - s);
        done_ = true;
        return true;
    }

private:
    // The line from s ends at c, its first control byte other than tab.
    bool stop(const char* s, const char* c, Line& line) {
        if (*c == '\n') {
            at_ = c + 1;
        } else if (*c == '\r' && c + 1 == end_) {
            done_ = true;
        } else if (*c == '\r' && c[1] == '\n') {
            at_ = c + 2;
        } else {
            throw Refused{};
        }
        if (c == s) throw Refused{};
        line.p = s;
        line.n = static_cast<size_t>(c - s);
        return true;
    }

    const char* at_;
    const char* end_;
    bool done_ = false;
};

size_t count_newlines(const char* p, const char* end) {
    size_t count = 0;
#ifdef __SSE2__
    // Up to 255 blocks of 16 bytes add their matches (-1 a byte) in 16 byte counters, then summed.
    const __m128i nl = _mm_set1_epi8('\n');
    while (end - p >= 16) {
        __m128i counters = _mm_setzero_si128();
        for (int blocks = 0; blocks < 255 && end - p >= 16; ++blocks, p += 16)
            counters = _mm_sub_epi8(counters, _mm_cmpeq_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)), nl));
        __m128i sums = _mm_sad_epu8(counters, _mm_setzero_si128());
        count += static_cast<size_t>(_mm_cvtsi128_si32(sums)) + static_cast<size_t>(_mm_extract_epi16(sums, 4));
    }
#endif
    for (; p < end; ++p) count += *p == '\n';
    return count;
}

// Whether the n bytes at a and b are equal (word loads, the last one overlapping).
bool same_bytes(const char* a, const char* b, size_t n) {
    if (n >= 8) {
        for (size_t i = 0; i + 8 < n; i += 8)
            if (load64(a + i) != load64(b + i)) return false;
        return load64(a + n - 8) == load64(b + n - 8);
    }
    if (n >= 4) return load32(a) == load32(b) && load32(a + n - 4) == load32(b + n - 4);
    for (size_t i = 0; i < n; ++i)
        if (a[i] != b[i]) return false;
    return true;
}

// The distinct lines of one input (private_set_intersection's smallest), each with a
// count of the parties that hold it so far, all in one 8-byte slot:
//     16 bits of the hash | the count (8 bits) | the line's offset in the input + 1 (40 bits).
// A line holds no '\n' or '\r' (lines() refuses control characters), so a key equals the
// line at an offset when the bytes match and the line ends right after them: probing
// touches the slot (prefetched) and, on a matching tag, the line's text (prefetched too).
class LineIndex {
public:
    static constexpr uint64_t kOffsetBits = 40, kOffsetMask = (uint64_t{1} << kOffsetBits) - 1;

    LineIndex(std::string_view text, size_t lines) : text_(text) {
        if (text.size() >= kOffsetMask) fail(MESATEE_ERROR_FUNCTION_FAILED, "the smallest input exceeds 1 TiB");
        size_t n = 16;
        while (n < 2 * lines) n <<= 1;
        slots_.assign(n, 0);
        mask_ = n - 1;
    }

    static unsigned count(uint64_t slot) { return static_cast<unsigned>(slot >> kOffsetBits) & 0xff; }
    void prefetch_slot(uint64_t h) const { __builtin_prefetch(&slots_[h & mask_]); }
    void prefetch_text(uint64_t h) const {
        uint64_t slot = slots_[h & mask_];
        if (slot >> 48 == h >> 48 && slot) __builtin_prefetch(text_.data() + (slot & kOffsetMask) - 1);
    }

    // The slot holding the line, else an empty slot where it goes (when inserting).
    uint64_t* probe(const Line& line) {
        uint64_t tag = line.h >> 48;
        for (size_t s = line.h & mask_;; s = (s + 1) & mask_) {
            uint64_t& slot = slots_[s];
            if (slot == 0 || (slot >> 48 == tag && equal(slot, line))) return &slot;
        }
    }
    // The first slot of the line's run with its tag, else the empty slot that ends the run: the
    // line's slot unless it is absent or another line there shares its tag (holds() tells).
    uint64_t* candidate(const Line& line) {
        uint64_t tag = line.h >> 48;
        for (size_t s = line.h & mask_;; s = (s + 1) & mask_) {
            uint64_t& slot = slots_[s];
            if (slot == 0 || slot >> 48 == tag) return &slot;
        }
    }
    // Whether a full slot holds the line.
    bool holds(uint64_t slot, const Line& line) const { return equal(slot, line); }
    // Where a full slot's line starts in the indexed text.
    static size_t offset(uint64_t slot) { return (slot & kOffsetMask) - 1; }
    const char* text() const { return text_.data(); }

    void set(uint64_t* slot, const Line& line, unsigned count) {
        uint64_t offset = static_cast<uint64_t>(line.p - text_.data()) + 1;
        *slot = (line.h >> 48) << 48 | uint64_t{count} << kOffsetBits | offset;
    }
    static void set_count(uint64_t* slot, unsigned count) {
        *slot = (*slot & ~(uint64_t{0xff} << kOffsetBits)) | uint64_t{count} << kOffsetBits;
    }
    uint64_t hash(const Line& line) const { return hash_(std::string_view(line.p, line.n)); }

private:
    bool equal(uint64_t slot, const Line& line) const {
        size_t at = (slot & kOffsetMask) - 1;
        if (text_.size() - at < line.n || !same_bytes(text_.data() + at, line.p, line.n)) return false;
        size_t end = at + line.n;
        return end == text_.size() || text_[end] == '\n' || text_[end] == '\r';
    }

    std::string_view text_;
    Hasher hash_;
    std::vector<uint64_t> slots_;
    size_t mask_ = 0;
};

// Calls f(line) for each line of an input in order, scanning and hashing 16 lines ahead:
// the slot is prefetched 16 lines ahead and, when f compares lines with the indexed text
// (kPrefetchText), the text of a slot with a matching tag 8 lines ahead.
template <bool kPrefetchText, class F>
void for_each_line(const LineIndex& index, LineScanner& scan, F f) {
    constexpr size_t kAhead = 16, kText = 8;
    Line ring[kAhead];
    size_t ahead = 0;
    for (; ahead < kAhead && scan.next(ring[ahead]); ++ahead) index.prefetch_slot(ring[ahead].h = index.hash(ring[ahead]));
    bool more = ahead == kAhead;
    for (size_t i = 0; i < ahead; ++i) {
        Line line = ring[i % kAhead];
        if (kPrefetchText && i + kText < ahead) index.prefetch_text(ring[(i + kText) % kAhead].h);
        if (more) {
            Line& next = ring[i % kAhead];
            if (scan.next(next)) {
                index.prefetch_slot(next.h = index.hash(next));
                ++ahead;
            } else {
                more = false;
            }
        }
        f(line);
    }
}

// The lines l with seen[l] == n, sorted by their text (unsigned byte order): by the first
// 8 bytes first, so that few comparisons touch the text.
std::vector<uint32_t> sorted_lines(const std::vector<std::string_view>& items, const std::vector<uint8_t>& seen,
                                   size_t n) {
    std::vector<std::pair<uint64_t, uint32_t>> keyed;
    for (size_t l = 0; l < items.size(); ++l) {
        if (seen[l] != n) continue;
        uint8_t b[8] = {0};
        std::memcpy(b, items[l].data(), std::min<size_t>(8, items[l].size()));
        uint64_t prefix = 0;
        for (uint8_t x : b) prefix = prefix << 8 | x;
        keyed.emplace_back(prefix, static_cast<uint32_t>(l));
    }
    std::sort(keyed.begin(), keyed.end(), [&](const auto& x, const auto& y) {
        return x.first != y.first ? x.first < y.first : items[x.second] < items[y.second];
    });
    std::vector<uint32_t> out(keyed.size());
    for (size_t i = 0; i < keyed.size(); ++i) out[i] = keyed[i].second;
    return out;
}

// An item with its first 8 bytes as a big-endian number (zero-padded; a line holds no zero
// byte), so that most comparisons are of numbers.
struct Keyed {
    uint64_t prefix;
    const char* p;
    size_t n;
};

Keyed keyed(const Line& line) {
    uint64_t prefix = 0;
    if (line.n >= 8) {
        prefix = load64(line.p);
        if constexpr (__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__) prefix = __builtin_bswap64(prefix);
    } else {
        for (size_t i = 0; i < 8; ++i) prefix = prefix << 8 | (i < line.n ? static_cast<uint8_t>(line.p[i]) : 0);
    }
    return {prefix, line.p, line.n};
}

struct KeyedLess {
    bool operator()(const Keyed& x, const Keyed& y) const {
        return x.prefix != y.prefix ? x.prefix < y.prefix : std::string_view(x.p, x.n) < std::string_view(y.p, y.n);
    }
};

// Sorts items as byte strings (unsigned byte order): a most-significant-digit radix sort on
// the byte of their prefixes at `shift` (through tmp, as many items), then on the next byte
// within each bucket; small buckets, and items sharing their 8-byte prefix, by comparison.
void sort_bucket(Keyed* a, Keyed* tmp, size_t n, int shift) {
    if (n <= 16) {  // insertion sort
        for (size_t i = 1; i < n; ++i) {
            Keyed k = a[i];
            size_t j = i;
            for (; j > 0 && KeyedLess()(k, a[j - 1]); --j) a[j] = a[j - 1];
            a[j] = k;
        }
        return;
    }
    if (shift < 0) {
        std::sort(a, a + n, KeyedLess());
        return;
    }
    size_t count[256] = {0};
    for (size_t i = 0; i < n; ++i) ++count[(a[i].prefix >> shift) & 0xff];
    if (count[(a[0].prefix >> shift) & 0xff] == n) return sort_bucket(a, tmp, n, shift - 8);  // one byte for all
    size_t at[256];
    for (size_t b = 0, sum = 0; b < 256; ++b) {
        at[b] = sum;
        sum += count[b];
    }
    for (size_t i = 0; i < n; ++i) tmp[at[(a[i].prefix >> shift) & 0xff]++] = a[i];
    std::memcpy(a, tmp, n * sizeof(Keyed));
    for (size_t b = 0, start = 0; b < 256; start += count[b++])
        if (count[b] > 1) sort_bucket(a + start, tmp + start, count[b], shift - 8);
}

// Sorts items as byte strings: into 65,536 buckets by their first 2 bytes, in place (each
// item swapped into its bucket's next free place), then each bucket as above, through a
// buffer as large as the largest bucket (few items: by comparison).
void sort_items(std::vector<Keyed>& items) {
    if (items.size() < 65536) {
        std::sort(items.begin(), items.end(), KeyedLess());
        return;
    }
    std::vector<size_t> count(1 << 16, 0);
    for (const Keyed& k : items) ++count[k.prefix >> 48];
    std::vector<size_t> next(count.size()), end(count.size());
    size_t largest = 0;
    for (size_t b = 0, sum = 0; b < count.size(); ++b) {
        next[b] = sum;
        end[b] = sum += count[b];
        largest = std::max(largest, count[b]);
    }
    for (size_t b = 0; b < count.size(); ++b) {
        while (next[b] < end[b]) {
            Keyed k = items[next[b]];
            for (size_t d = k.prefix >> 48; d != b; d = k.prefix >> 48) std::swap(k, items[next[d]++]);
            items[next[b]++] = k;
        }
    }
    std::vector<Keyed> tmp(largest);
    for (size_t b = 0, start = 0; b < count.size(); start += count[b++])
        if (count[b] > 1) sort_bucket(items.data() + start, tmp.data(), count[b], 40);
}


void append(Bytes& out, std::string_view s) { out.insert(out.end(), s.begin(), s.end()); }

// Writes into a buffer sized once for at most `capacity` bytes.
class Writer {
public:
    explicit Writer(size_t capacity) : out_(capacity), at_(reinterpret_cast<char*>(out_.data())) {}
    void put(std::string_view s) {
        std::memcpy(at_, s.data(), s.size());
        at_ += s.size();
    }
    void put(char c) { *at_++ = c; }
    void put(int64_t v) { at_ = std::to_chars(at_, at_ + 20, v).ptr; }  // 20 characters hold any int64
    Bytes finish() {
        out_.resize(static_cast<size_t>(at_ - reinterpret_cast<char*>(out_.data())));
        return std::move(out_);
    }

private:
    Bytes out_;
    char* at_;
};

// The slots of a function with one input and one output per party: exactly
// <input>0 .. <input>{n-1} and <output>0 .. <output>{n-1}.
void check_party_slots(const std::string& fn, const std::string& why, size_t n, const std::vector<std::string>& named,
                       const std::string& prefix) {
    for (int64_t i = 0; i < kMaxParties; ++i) {
        std::string slot = prefix + std::to_string(i);
        bool present = std::find(named.begin(), named.end(), slot) != named.end();
        if (present && static_cast<size_t>(i) >= n) fail(MESATEE_ERROR_ARGUMENT_INVALID, fn + ": " + why + " but " + slot + " is given");
        if (!present && static_cast<size_t>(i) < n) fail(MESATEE_ERROR_ARGUMENT_INVALID, fn + ": " + why + " but " + slot + " is missing");
    }
}

std::vector<SlotDecl> party_slots(const std::string& prefix, const std::string& doc) {
    std::vector<SlotDecl> slots;
    for (int64_t i = 0; i < kMaxParties; ++i) slots.push_back({prefix + std::to_string(i), true, doc});
    return slots;
}

std::string slot_name(const char* prefix, size_t i) { return prefix + std::to_string(i); }

// ------------------------------------------------------------------ ordered_set_join

// A CSV file as a table of fields: every row as many fields as the first, the key field not empty.
struct Table {
    size_t rows = 0, cols = 0;
    std::vector<std::string_view> fields;
    std::string_view at(size_t r, size_t c) const { return fields[r * cols + c]; }
};

Table parse_table(const Bytes& input, const std::string& slot, size_t key, const char* key_argument, bool ascending) {
    Table t;
    std::vector<std::string_view> all = lines(input, slot);
    for (size_t r = 0; r < all.size(); ++r) {
        std::vector<std::string_view> fields = split(all[r], ',');
        if (r == 0) {
            t.cols = fields.size();
            if (key >= t.cols)
                bad_line(slot, 1, "has " + std::to_string(t.cols) + " columns, too few for " + key_argument + " " +
                                      std::to_string(key));
            t.fields.reserve(all.size() * t.cols);
        }
        if (fields.size() != t.cols)
            bad_line(slot, r + 1, "has " + std::to_string(fields.size()) + " columns, expected " + std::to_string(t.cols));
        if (fields[key].empty()) bad_line(slot, r + 1, "the key column is empty");
        if (r > 0) {
            std::string_view prev = t.at(r - 1, key);
            if (!(ascending ? prev < fields[key] : prev > fields[key]))
                bad_line(slot, r + 1,
                         std::string("key not in strictly ") + (ascending ? "ascending" : "descending") + " order");
        }
        t.fields.insert(t.fields.end(), fields.begin(), fields.end());
        ++t.rows;
    }
    return t;
}

Bytes run_ordered_set_join(const Arguments& args, const Inputs& inputs, Outputs& outputs) {
    bool ascending = args.boolean("ascending"), drop = args.boolean("drop");
    auto left = static_cast<size_t>(args.integer("left_column"));
    auto right = static_cast<size_t>(args.integer("right_column"));
    const Bytes& in1 = inputs.at("input_data1");
    const Bytes& in2 = inputs.at("input_data2");
    Table a = parse_table(in1, "input_data1", left, "left_column", ascending);
    Table b = parse_table(in2, "input_data2", right, "right_column", ascending);
    Bytes out;
    out.reserve(in1.size() + in2.size() + std::min(a.rows, b.rows));
    size_t count = 0;
    for (size_t i = 0, j = 0; i < a.rows && j < b.rows;) {
        std::string_view ka = a.at(i, left), kb = b.at(j, right);
        if (ka == kb) {
            for (size_t c = 0; c < a.cols; ++c) {
                if (c) out.push_back(',');
                append(out, a.at(i, c));
            }
            for (size_t c = 0; c < b.cols; ++c) {
                if (drop && c == right) continue;
                out.push_back(',');
                append(out, b.at(j, c));
            }
            out.push_back('\n');
            ++count, ++i, ++j;
        } else if ((ka < kb) == ascending) {
            ++i;
        } else {
            ++j;
        }
    }
    outputs["output_result"] = std::move(out);
    return text_bytes(std::to_string(count) + " records");
}

// ------------------------------------------------------------------ private_join_and_compute

// One `id : amount` line: the trimmed id (not empty) and a 64-bit integer amount.
void parse_amount_line(std::string_view line, const std::string& slot, size_t number, std::string_view& id,
                       int64_t& amount) {
    size_t colon = line.find(':');
    if (colon == std::string_view::npos || line.find(':', colon + 1) != std::string_view::npos)
        bad_line(slot, number, "expected `id : amount`, one colon");
    auto trim = [](std::string_view f) {
        while (!f.empty() && (f.front() == ' ' || f.front() == '\t')) f.remove_prefix(1);
        while (!f.empty() && (f.back() == ' ' || f.back() == '\t')) f.remove_suffix(1);
        return f;
    };
    id = trim(line.substr(0, colon));
    std::string_view a = trim(line.substr(colon + 1));
    if (id.empty()) bad_line(slot, number, "the id is empty");
    if (!a.empty() && a.front() == '+') a.remove_prefix(1);
    auto [ptr, ec] = std::from_chars(a.data(), a.data() + a.size(), amount);
    if (a.empty() || ptr != a.data() + a.size() || (ec != std::errc() && ec != std::errc::result_out_of_range))
        bad_line(slot, number, "the amount is not an integer");
    if (ec == std::errc::result_out_of_range) bad_line(slot, number, "the amount is outside the 64-bit range");
}

void add_checked(int64_t& total, int64_t amount) {
    if (__builtin_add_overflow(total, amount, &total))
        fail(MESATEE_ERROR_FUNCTION_FAILED, "private_join_and_compute: a sum overflows the 64-bit range");
}

void check_join_and_compute_slots(const Arguments& args, const std::vector<std::string>& inputs,
                                  const std::vector<std::string>& outputs) {
    auto n = static_cast<size_t>(args.integer("num_user"));
    std::string why = "num_user is " + std::to_string(n);
    check_party_slots("private_join_and_compute", why, n, inputs, "input_data");
    check_party_slots("private_join_and_compute", why, n, outputs, "output_data");
}

Bytes run_private_join_and_compute(const Arguments& args, const Inputs& inputs, Outputs& outputs) {
    auto n = static_cast<size_t>(args.integer("num_user"));
    // Every input parsed first (a defect anywhere refuses the task), ids as views into the input.
    std::vector<std::vector<std::string_view>> ids(n);
    std::vector<std::vector<int64_t>> amounts(n);
    for (size_t i = 0; i < n; ++i) {
        std::string slot = slot_name("input_data", i);
        std::vector<std::string_view> all = lines(inputs.at(slot), slot);
        ids[i].resize(all.size());
        amounts[i].resize(all.size());
        for (size_t l = 0; l < all.size(); ++l) parse_amount_line(all[l], slot, l + 1, ids[i][l], amounts[i][l]);
    }
    // The smallest input first: the index holds only its ids.
    std::vector<size_t> order(n);
    for (size_t i = 0; i < n; ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(), [&](size_t x, size_t y) { return ids[x].size() < ids[y].size(); });

    const std::vector<std::string_view>& base = ids[order[0]];
    ItemIndex index(base);
    // Per base line (the first line of each id): the sum, and how many parties (in order) hold the id so far.
    std::vector<int64_t> sum(base.size(), 0);
    std::vector<uint8_t> seen(base.size(), 0);
    for_each_hashed(index, base, [&](size_t l, uint64_t h) {
        uint32_t first = index.insert(static_cast<uint32_t>(l), h);
        seen[first] = 1;
        add_checked(sum[first], amounts[order[0]][l]);  // an id on several lines: its amounts add up
    });
    for (size_t round = 1; round < n; ++round) {
        size_t party = order[round];
        for_each_hashed(index, ids[party], [&](size_t l, uint64_t h) {
            uint32_t j = index.find(ids[party][l], h);
            if (j == ItemIndex::kNone || seen[j] < round) return;  // not held by every party so far
            seen[j] = static_cast<uint8_t>(round + 1);
            add_checked(sum[j], amounts[party][l]);
        });
    }
    std::vector<uint32_t> common = sorted_lines(base, seen, n);  // the first line of each common id
    size_t bytes = 0;
    for (uint32_t l : common) bytes += base[l].size() + 24;
    Writer writer(bytes);
    for (uint32_t l : common) {
        writer.put(base[l]);
        writer.put(" : ");
        writer.put(sum[l]);
        writer.put('\n');
    }
    Bytes out = writer.finish();
    for (size_t i = 0; i + 1 < n; ++i) outputs[slot_name("output_data", i)] = out;
    outputs[slot_name("output_data", n - 1)] = std::move(out);
    return text_bytes(std::to_string(n) + " users join the task in total.");
}

// ------------------------------------------------------------------ private_set_intersection

size_t count_inputs(const std::vector<std::string>& inputs) {
    size_t n = 0;
    for (const std::string& s : inputs) n += s.rfind("input_data", 0) == 0;
    return n;
}

void check_set_intersection_slots(const Arguments&, const std::vector<std::string>& inputs,
                                  const std::vector<std::string>& outputs) {
    size_t n = count_inputs(inputs);
    if (n < 2) fail(MESATEE_ERROR_ARGUMENT_INVALID, "private_set_intersection: needs at least 2 inputs");
    std::string why = std::to_string(n) + " inputs are given";
    check_party_slots("private_set_intersection", why, n, inputs, "input_data");
    check_party_slots("private_set_intersection", why, n, outputs, "output_data");
}

// The lines of a probing input that the index may hold (a slot of their run has their tag),
// checked against the indexed text in batches of kBatch: the scan gathers them, then each check
// prefetches the text kAhead candidates further, its address read from the batch rather than
// from a slot that may itself still be on its way. (Checking each line as it is scanned, the
// text prefetched from its slot 8 lines ahead, made the probing pass ~30% longer.)
// Calls f(slot, line), in the lines' order, for each line the index holds.
class Candidates {
public:
    explicit Candidates(LineIndex& index) : index_(index), batch_(kBatch) {}

    template <class F>
    void add(uint64_t* slot, const Line& line, F f) {
        batch_[size_++] = {slot, LineIndex::offset(*slot), line};
        if (size_ == kBatch) flush(f);
    }

    // Checks the candidates gathered.
    template <class F>
    void flush(F f) {
        constexpr size_t kAhead = 8;
        for (size_t i = 0; i < size_ && i < kAhead; ++i) __builtin_prefetch(index_.text() + batch_[i].at);
        for (size_t i = 0; i < size_; ++i) {
            if (i + kAhead < size_) __builtin_prefetch(index_.text() + batch_[i + kAhead].at);
            const Candidate& c = batch_[i];
            uint64_t* slot = index_.holds(*c.slot, c.line) ? c.slot : index_.probe(c.line);  // else a tag shared
            if (*slot) f(slot, c.line);
        }
        size_ = 0;
    }

private:
    static constexpr size_t kBatch = 1024;
    struct Candidate {
        uint64_t* slot;
        size_t at;  // where the slot's line starts in the indexed text
        Line line;
    };

    LineIndex& index_;
    std::vector<Candidate> batch_;
    size_t size_ = 0;
};

Bytes run_private_set_intersection(const Arguments& args, const Inputs& inputs, Outputs& outputs) {
    bool membership = args.str("mode") == "membership";
    size_t n = inputs.size();
    std::vector<const Bytes*> input(n);
    for (size_t i = 0; i < n; ++i) input[i] = &inputs.at(slot_name("input_data", i));
    try {
        // The smallest input (in bytes) is indexed, the others probe it in turn.
        std::vector<size_t> order(n);
        for (size_t i = 0; i < n; ++i) order[i] = i;
        std::stable_sort(order.begin(), order.end(), [&](size_t x, size_t y) { return input[x]->size() < input[y]->size(); });

        // Each distinct line of the smallest input, with how many parties (in order) hold it so far;
        // a line repeated within one input counts once.
        const Bytes& base = *input[order[0]];
        LineScanner base_lines(base);
        size_t lines = count_newlines(base_lines.begin(), base_lines.end()) + 1;
        LineIndex index(std::string_view(reinterpret_cast<const char*>(base.data()), base.size()), lines);
        for_each_line<false>(index, base_lines, [&](const Line& line) {
            uint64_t* slot = index.probe(line);
            if (!*slot) index.set(slot, line, 1);
        });
        size_t held = 0;            // distinct items common to all inputs
        std::vector<Keyed> common;  // each item as the last input processed holds it
        if (!membership) common.reserve(lines);
        Candidates candidates(index);
        for (size_t round = 1; round < n; ++round) {
            LineScanner scan(*input[order[round]]);
            bool last = round + 1 == n;
            auto found = [&](uint64_t* slot, const Line& line) {
                if (LineIndex::count(*slot) != round) return;
                LineIndex::set_count(slot, static_cast<unsigned>(round + 1));
                if (!last) return;
                if (membership)
                    ++held;
                else
                    common.push_back(keyed(line));
            };
            for_each_line<false>(index, scan, [&](const Line& line) {
                uint64_t* slot = index.candidate(line);
                if (*slot) candidates.add(slot, line, found);
            });
            candidates.flush(found);
        }

        if (membership) {
            for (size_t i = 0; i < n; ++i) {
                LineScanner scan(*input[i]);
                Bytes bits;
                bits.reserve(count_newlines(scan.begin(), scan.end()) + 1);
                for_each_line<true>(index, scan, [&](const Line& line) {
                    const uint64_t* slot = index.probe(line);
                    bits.push_back(*slot && LineIndex::count(*slot) == n ? '1' : '0');
                });
                outputs[slot_name("output_data", i)] = std::move(bits);
            }
        } else {
            sort_items(common);
            held = common.size();
            size_t bytes = 0;
            for (const Keyed& item : common) bytes += item.n + 1;
            Bytes out;  // appended to, not zero-filled first
            out.reserve(bytes);
            for (size_t i = 0; i < common.size(); ++i) {
                if (i + 16 < common.size()) __builtin_prefetch(common[i + 16].p);
                const uint8_t* item = reinterpret_cast<const uint8_t*>(common[i].p);
                out.insert(out.end(), item, item + common[i].n);
                out.push_back('\n');
            }
            for (size_t i = 0; i + 1 < n; ++i) outputs[slot_name("output_data", i)] = out;
            outputs[slot_name("output_data", n - 1)] = std::move(out);
        }
        return text_bytes(std::to_string(held) + " common items");
    } catch (const Refused&) {
        // An input lines() refuses: the first one in slot order, with lines()'s error.
        for (size_t i = 0; i < n; ++i) lines(*input[i], slot_name("input_data", i));
        fail(MESATEE_ERROR_FUNCTION_FAILED, "private_set_intersection: an input was refused");
    }
}

}  // namespace

const Function& ordered_set_join() {
    static const Function fn{
        "ordered_set_join", 1,
        "Joins two CSV files sorted by their key columns: one output row per key both hold.",
        {{"left_column", ArgType::Int, std::nullopt, 0.0, 1023.0, {}, "the key column of input_data1, from 0"},
         {"right_column", ArgType::Int, std::nullopt, 0.0, 1023.0, {}, "the key column of input_data2, from 0"},
         {"ascending", ArgType::Bool, msgpack::Value::boolean(true), std::nullopt, std::nullopt, {},
          "true: both inputs sorted by key ascending; false: descending"},
         {"drop", ArgType::Bool, msgpack::Value::boolean(true), std::nullopt, std::nullopt, {},
          "true: leave input_data2's key column out of the joined rows"}},
        {{"input_data1", false, "CSV rows, strictly sorted by the key column left_column"},
         {"input_data2", false, "CSV rows, strictly sorted by the key column right_column"}},
        {{"output_result", false, "the joined rows: input_data1's row, then input_data2's (comma-separated)"}},
        run_ordered_set_join};
    return fn;
}

const Function& private_join_and_compute() {
    static const Function fn{
        "private_join_and_compute", 1,
        "Sums, per id, the amounts of the ids that every party holds; every party receives the sums.",
        {{"num_user", ArgType::Int, std::nullopt, 2.0, static_cast<double>(kMaxParties), {},
          "the number of parties: input_data0 .. and output_data0 .. up to num_user - 1"}},
        party_slots("input_data", "`id : amount` lines, integer amounts"),
        party_slots("output_data", "`id : sum` lines, the ids every input holds, sorted by id"),
        run_private_join_and_compute};
    return fn;
}

const Function& private_set_intersection() {
    static const Function fn{
        "private_set_intersection", 1,
        "Intersects the item sets of 2 to 16 parties (unsorted lines); each party learns the intersection or its "
        "own membership bits.",
        {{"mode", ArgType::String, msgpack::Value::str("intersection"), std::nullopt, std::nullopt,
          {"intersection", "membership"},
          "intersection: every output lists the common items; membership: one 0/1 per line of its own input"}},
        party_slots("input_data", "one item per line, any order, duplicates allowed"),
        party_slots("output_data", "the common items sorted, one per line; or one 0/1 per line of its party's input"),
        run_private_set_intersection};
    return fn;
}

namespace {
const Registration registered_ordered_set_join(ordered_set_join());
const Registration registered_private_join_and_compute(private_join_and_compute(), check_join_and_compute_slots);
const Registration registered_private_set_intersection(private_set_intersection(), check_set_intersection_slots);
}  // namespace

}  // namespace mesatee::functions
