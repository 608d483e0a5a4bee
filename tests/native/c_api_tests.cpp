// Native tests of the one native API (mesatee.h and the C++ wrapper
// mesatee.hpp), built under ASan and UBSan in CI (tests/test_native.py).
#include <atomic>
#include <cstring>
#include <thread>

#include "check.hpp"
#include "mesatee/mesatee.hpp"

using native_tests::setup;

namespace {

mesatee::Enclave open_enclave(const mesatee::Bytes& state = {}) {
    return mesatee::Enclave::open({setup().image, "", setup().platform_dir, state});
}

template <typename Fn>
mesatee_status status_of(Fn&& fn) {
    try {
        fn();
        return MESATEE_OK;
    } catch (const mesatee::Error& e) {
        CHECK(std::strlen(e.what()) > 0);
        return e.status();
    }
}

}  // namespace

TEST(c_api_refuses_bad_arguments) {
    mesatee_enclave* e = nullptr;
    CHECK(mesatee_enclave_open(nullptr, &e) == MESATEE_ERROR_INVALID_ARGUMENT);
    CHECK(std::strlen(mesatee_last_error_message()) > 0);
    mesatee_enclave_config config{};
    CHECK(mesatee_enclave_open(&config, &e) == MESATEE_ERROR_INVALID_ARGUMENT && e == nullptr);
    config.image_path = "/nonexistent/enclave.so";
    config.platform_dir = setup().platform_dir.c_str();
    CHECK(mesatee_enclave_open(&config, &e) == MESATEE_ERROR_SIGNATURE_INVALID);
    mesatee_buffer_free(nullptr);
    mesatee_enclave_close(nullptr);
    CHECK(std::string(mesatee_status_name(MESATEE_ERROR_UNSEAL_FAILED)) == "ERROR_UNSEAL_FAILED");
    CHECK(std::string(mesatee_status_name(static_cast<mesatee_status>(999))) == "UNKNOWN_STATUS");
    CHECK(mesatee_enclave_ping(nullptr) == MESATEE_ERROR_INVALID_ARGUMENT);
}

TEST(identity_keys_and_state) {
    mesatee::Enclave e = open_enclave();
    mesatee::Identity id = e.identity();
    CHECK(id.mrenclave.size() == 32 && id.platform == MESATEE_PLATFORM_SOFTWARE);
    mesatee::PublicKeys keys = e.public_keys();
    mesatee::Enclave again = open_enclave(e.sealed_state());
    CHECK(again.public_keys().hpke == keys.hpke && again.public_keys().signing == keys.signing);
    CHECK(open_enclave().public_keys().hpke != keys.hpke);
}

TEST(seal_unseal_and_tampering) {
    mesatee::Enclave e = open_enclave();
    for (size_t size : {size_t(0), size_t(1), size_t(100000)}) {
        mesatee::Bytes data(size, 0x5a);
        mesatee::Bytes blob = e.seal(data, std::string("aad"));
        CHECK(blob.size() == size + MESATEE_SEAL_OVERHEAD);
        CHECK(e.unseal(blob, std::string("aad")) == data);
        CHECK(status_of([&] { e.unseal(blob, std::string("other")); }) == MESATEE_ERROR_UNSEAL_FAILED);
    }
    // A failed unseal writes no plaintext into the caller's buffer.
    mesatee::Bytes secret(64, 0x77), blob = e.seal(secret);
    blob.back() ^= 1;
    mesatee::Bytes out(64, 0xaa);
    size_t size = 0;
    CHECK(mesatee_enclave_unseal(e.handle(), blob.data(), blob.size(), nullptr, 0, out.data(), out.size(), &size) ==
          MESATEE_ERROR_UNSEAL_FAILED);
    CHECK(std::memcmp(out.data(), secret.data(), 16) != 0);
    mesatee::Bytes small(10);
    CHECK(mesatee_enclave_seal(e.handle(), MESATEE_SEAL_UNIQUE, secret.data(), secret.size(), nullptr, 0, small.data(),
                               small.size(), &size) == MESATEE_ERROR_BUFFER_TOO_SMALL &&
          size == 64 + MESATEE_SEAL_OVERHEAD);
    CHECK(status_of([&] { e.unseal(mesatee::Bytes(5)); }) == MESATEE_ERROR_FORMAT);
}

TEST(evidence_verified_by_the_cpp_verifier) {
    mesatee::Enclave e = open_enclave();
    mesatee::Bytes nonce{1, 2, 3};
    mesatee::Bytes evidence = e.evidence(nonce);
    mesatee::Policy policy;
    policy.mrenclave = e.identity().mrenclave;
    policy.allow_software = true;
    policy.trusted_roots = {mesatee::platform_root_certificate(setup().platform_dir)};
    mesatee::Claims claims = mesatee::verify_evidence(evidence, policy, &nonce);
    CHECK(claims.keys.hpke == e.public_keys().hpke && claims.nonce == nonce);
    mesatee::Bytes other{9};
    CHECK(status_of([&] { mesatee::verify_evidence(evidence, policy, &other); }) == MESATEE_ERROR_NONCE_MISMATCH);
    policy.allow_software = false;
    CHECK(status_of([&] { mesatee::verify_evidence(evidence, policy); }) == MESATEE_ERROR_PLATFORM_NOT_ALLOWED);
}

TEST(invoke_refuses_garbage_and_functions_are_listed) {
    mesatee::Enclave e = open_enclave();
    CHECK(status_of([&] { e.invoke(std::string("\xc1")); }) == MESATEE_ERROR_FORMAT);
    CHECK(status_of([&] { e.invoke(mesatee::Bytes{}); }) == MESATEE_ERROR_FORMAT);
    CHECK(!e.functions().empty());
}

TEST(many_threads_share_one_enclave) {
    mesatee::Enclave e = open_enclave();
    std::atomic<int> wrong{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t) {
        threads.emplace_back([&, t] {
            for (int i = 0; i < 200; ++i) {
                mesatee::Bytes data(static_cast<size_t>(t * 97 + i), static_cast<uint8_t>(t));
                std::string aad = std::to_string(t) + ":" + std::to_string(i);
                if (e.unseal(e.seal(data, aad), aad) != data) ++wrong;
                if (i % 50 == 0 && e.evidence().empty()) ++wrong;
                if (mesatee_enclave_ping(e.handle()) != MESATEE_OK) ++wrong;
            }
        });
    }
    for (std::thread& thread : threads) thread.join();
    CHECK(wrong == 0);
}

int run_no_exceptions_tests();  // no_exceptions_tests.cpp, built without exceptions

int main(int argc, char** argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: %s ENCLAVE_IMAGE PLATFORM_DIR\n", argv[0]);
        return 2;
    }
    setup() = {argv[1], argv[2]};
    int passed = 0, failed = 0;
    auto record = [&](const char* name, int failures_before) {
        bool ok = native_tests::failures() == failures_before;
        (ok ? passed : failed) += 1;
        std::printf("%s %s\n", ok ? "PASS" : "FAIL", name);
    };
    for (const native_tests::Case& c : native_tests::cases()) {
        int before = native_tests::failures();
        try {
            c.run();
        } catch (const std::exception& e) {
            std::fprintf(stderr, "%s: unexpected exception: %s\n", c.name, e.what());
            ++native_tests::failures();
        }
        record(c.name, before);
    }
    int before = native_tests::failures();
    run_no_exceptions_tests();
    record("no_exceptions_wrapper", before);
    std::printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
