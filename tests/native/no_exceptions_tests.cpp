// The wrapper for services built without exceptions: every call returns a
// mesatee::Result. Compiled with -fno-exceptions.
#define MESATEE_NO_EXCEPTIONS
#include "check.hpp"
#include "mesatee/mesatee.hpp"

int run_no_exceptions_tests() {
    using native_tests::setup;
    int before = native_tests::failures();
    auto bad = mesatee::Enclave::open({"/nonexistent.so", "", setup().platform_dir, {}});
    CHECK(!bad.ok() && bad.status() == MESATEE_ERROR_SIGNATURE_INVALID && !bad.message().empty());
    auto opened = mesatee::Enclave::open({setup().image, "", setup().platform_dir, {}});
    CHECK(opened.ok());
    if (!opened) return native_tests::failures() - before;
    mesatee::Enclave e = std::move(opened).value();
    auto blob = e.seal(std::string("no exceptions"));
    CHECK(blob.ok());
    auto plain = e.unseal(blob.value());
    CHECK(plain.ok() && plain.value() == mesatee::Bytes({'n', 'o', ' ', 'e', 'x', 'c', 'e', 'p', 't', 'i', 'o', 'n', 's'}));
    auto refused = e.unseal(mesatee::Bytes(80));
    CHECK(!refused.ok() && refused.status() == MESATEE_ERROR_FORMAT);
    return native_tests::failures() - before;
}
