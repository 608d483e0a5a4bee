// Parsing the text inputs of the built-in functions (Teaclave's formats):
// strict, bounded, and every error naming the slot and the line, never its content.
#pragma once

#include <string_view>
#include <vector>

#include "common/bytes.hpp"

namespace mesatee::functions {

// The lines of a text input; a single trailing newline is allowed, "\r\n" too.
// Refuses an empty input, an empty line, and bytes that are not printable text.
std::vector<std::string_view> lines(const Bytes& input, const std::string& slot);

// A text result (return value or output) as bytes.
inline Bytes text_bytes(std::string_view s) { return Bytes(s.begin(), s.end()); }

[[noreturn]] void bad_line(const std::string& slot, size_t line, const std::string& problem);

// The fields of a line split on sep, spaces around each field trimmed.
std::vector<std::string_view> split(std::string_view line, char sep);
// A whole field as a finite decimal number (locale-independent); else INPUT_INVALID naming slot, line and column.
double number(std::string_view field, const std::string& slot, size_t line, size_t column);

// A table of numbers, row-major: every line holds `columns` fields (0: as many as the first line).
struct Matrix {
    size_t rows = 0, cols = 0;
    std::vector<double> values;
    double operator()(size_t r, size_t c) const { return values[r * cols + c]; }
};
Matrix parse_matrix(const Bytes& input, const std::string& slot, size_t columns = 0, char sep = ',');

}  // namespace mesatee::functions
