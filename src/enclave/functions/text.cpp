#include "functions/text.hpp"

#include <charconv>
#include <cmath>
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

namespace mesatee::functions {

std::vector<std::string_view> split(std::string_view line, char sep) {
    std::vector<std::string_view> out;
    size_t start = 0;
    while (true) {
        size_t end = line.find(sep, start);
        std::string_view field = line.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
        while (!field.empty() && (field.front() == ' ' || field.front() == '\t')) field.remove_prefix(1);
        while (!field.empty() && (field.back() == ' ' || field.back() == '\t')) field.remove_suffix(1);
        out.push_back(field);
        if (end == std::string_view::npos) return out;
        start = end + 1;
    }
}

double number(std::string_view field, const std::string& slot, size_t line, size_t column) {
    double value = 0;
    const char* begin = field.data();
    const char* end = field.data() + field.size();
    if (!field.empty() && *begin == '+') ++begin;  // from_chars refuses a leading '+'
    auto [ptr, ec] = std::from_chars(begin, end, value);
    if (field.empty() || ec != std::errc() || ptr != end || !std::isfinite(value))
        bad_line(slot, line, "column " + std::to_string(column) + " is not a number");
    return value;
}

Matrix parse_matrix(const Bytes& input, const std::string& slot, size_t columns, char sep) {
    Matrix m;
    for (std::string_view text : lines(input, slot)) {
        size_t line = m.rows + 1;
        std::vector<std::string_view> fields = split(text, sep);
        if (m.rows == 0 && columns == 0) columns = fields.size();
        if (fields.size() != columns)
            bad_line(slot, line, "has " + std::to_string(fields.size()) + " columns, expected " + std::to_string(columns));
        for (size_t c = 0; c < fields.size(); ++c) m.values.push_back(number(fields[c], slot, line, c + 1));
        ++m.rows;
    }
    m.cols = columns;
    return m;
}

}  // namespace mesatee::functions
