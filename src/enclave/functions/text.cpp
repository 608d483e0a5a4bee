#include "functions/text.hpp"

#include <string>

namespace mesatee::functions {

void bad_line(const std::string& slot, size_t line, const std::string& problem) {
    fail(MESATEE_ERROR_INPUT_INVALID, "input " + slot + ", line " + std::to_string(line) + ": " + problem);
}

std::vector<std::string_view> lines(const Bytes& input, const std::string& slot) {
    std::string_view text(reinterpret_cast<const char*>(input.data()), input.size());
    if (text.empty()) fail(MESATEE_ERROR_INPUT_INVALID, "input " + slot + " is empty");
    if (text.back() == '\n') text.remove_suffix(1);
    std::vector<std::string_view> out;
    size_t start = 0;
    while (true) {
        size_t end = text.find('\n', start);
        std::string_view line = text.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        size_t number = out.size() + 1;
        if (line.empty()) bad_line(slot, number, "empty line");
        for (char c : line)
            if (static_cast<unsigned char>(c) < 0x20 && c != '\t') bad_line(slot, number, "control character");
        out.push_back(line);
        if (end == std::string_view::npos) break;
        start = end + 1;
    }
    return out;
}

}  // namespace mesatee::functions
