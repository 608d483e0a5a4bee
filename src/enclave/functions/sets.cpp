// ordered_set_intersect: Teaclave's two-party intersection of sorted lists.
// Each party learns, line by line, which of its own items the other holds.
#include <string>

#include "functions/registry.hpp"
#include "functions/text.hpp"

namespace mesatee::functions {
namespace {

void check_order(const std::vector<std::string_view>& items, bool ascending, const std::string& slot) {
    for (size_t i = 1; i < items.size(); ++i) {
        bool ordered = ascending ? items[i - 1] < items[i] : items[i - 1] > items[i];
        if (!ordered)
            bad_line(slot, i + 1, std::string("not in strictly ") + (ascending ? "ascending" : "descending") + " order");
    }
}

Bytes run_ordered_set_intersect(const Arguments& args, const Inputs& inputs, Outputs& outputs) {
    bool ascending = args.str("order") == "ascending";
    auto a = lines(inputs.at("input_data1"), "input_data1");
    auto b = lines(inputs.at("input_data2"), "input_data2");
    check_order(a, ascending, "input_data1");
    check_order(b, ascending, "input_data2");
    Bytes in_b(a.size(), '0'), in_a(b.size(), '0');
    size_t common = 0;
    for (size_t i = 0, j = 0; i < a.size() && j < b.size();) {
        if (a[i] == b[j]) {
            in_b[i++] = in_a[j++] = '1';
            ++common;
        } else if ((a[i] < b[j]) == ascending) {
            ++i;
        } else {
            ++j;
        }
    }
    outputs["output_result1"] = std::move(in_b);
    outputs["output_result2"] = std::move(in_a);
    return text_bytes(std::to_string(common) + " common items");
}

}  // namespace

const Function& ordered_set_intersect() {
    static const Function fn{
        "ordered_set_intersect", 1,
        "Intersects two sorted lists; each output marks, per line of one input, whether the other holds it.",
        {{"order", ArgType::String, msgpack::Value::str("ascending"), std::nullopt, std::nullopt,
          {"ascending", "descending"}, "the order both inputs are sorted in"}},
        {{"input_data1", false, "one item per line, sorted"}, {"input_data2", false, "one item per line, sorted"}},
        {{"output_result1", false, "one 0/1 per line of input_data1"},
         {"output_result2", false, "one 0/1 per line of input_data2"}},
        run_ordered_set_intersect};
    return fn;
}

namespace {
const Registration registered_ordered_set_intersect(ordered_set_intersect());
}  // namespace

}  // namespace mesatee::functions
