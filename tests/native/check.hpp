// A minimal test runner for the native tests: TEST registers, CHECK records a
// failure and goes on. The runner prints "N passed, M failed".
#pragma once

#include <cstdio>
#include <functional>
#include <string>
#include <vector>

namespace native_tests {

struct Case {
    const char* name;
    void (*run)();
};

inline std::vector<Case>& cases() {
    static std::vector<Case> all;
    return all;
}
inline int& failures() {
    static int n = 0;
    return n;
}
struct Register {
    Register(const char* name, void (*run)()) { cases().push_back({name, run}); }
};
// Where the tests find the enclave image and a platform folder of their own.
struct Setup {
    std::string image, platform_dir;
};
inline Setup& setup() {
    static Setup s;
    return s;
}

}  // namespace native_tests

#define NT_CONCAT2(a, b) a##b
#define NT_CONCAT(a, b) NT_CONCAT2(a, b)
#define TEST(name)                                                                         \
    static void name();                                                                   \
    static const native_tests::Register NT_CONCAT(register_, name)(#name, &name);         \
    static void name()
#define CHECK(cond)                                                                        \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            ++native_tests::failures();                                                    \
        }                                                                                  \
    } while (0)
