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

[[noreturn]] void bad_line(const std::string& slot, size_t line, const std::string& problem);

}  // namespace mesatee::functions
