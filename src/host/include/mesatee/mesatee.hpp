// mesatee.hpp — a C++17 wrapper over mesatee.h, the one native API.
//
// RAII owners for the enclave and for library-allocated buffers; results as
// std::vector<uint8_t>; failures as mesatee::Error (status + message). Build
// with MESATEE_NO_EXCEPTIONS (or without exception support) to get the same
// API returning mesatee::Result<T> values instead of throwing.
//
// Threads: one mesatee::Enclave may be used from several threads at once;
// destroying it must not race with calls on it.
#ifndef MESATEE_HPP
#define MESATEE_HPP

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "mesatee/mesatee.h"

#if !defined(MESATEE_NO_EXCEPTIONS) && !defined(__cpp_exceptions)
#define MESATEE_NO_EXCEPTIONS
#endif

#ifndef MESATEE_NO_EXCEPTIONS
#include <stdexcept>
#endif

namespace mesatee {

using Bytes = std::vector<uint8_t>;

// A borrowed byte range: from a vector, a string, or a pointer and a size.
struct ByteSpan {
    const uint8_t* data = nullptr;
    size_t size = 0;
    ByteSpan() = default;
    ByteSpan(const uint8_t* d, size_t n) : data(d), size(n) {}
    ByteSpan(const Bytes& b) : data(b.data()), size(b.size()) {}  // NOLINT: implicit by design
    ByteSpan(const std::string& s)                                 // NOLINT: implicit by design
        : data(reinterpret_cast<const uint8_t*>(s.data())), size(s.size()) {}
};

inline std::string last_error_message() { return mesatee_last_error_message(); }

#ifndef MESATEE_NO_EXCEPTIONS
class Error : public std::runtime_error {
public:
    Error(mesatee_status status, const std::string& message) : std::runtime_error(message), status_(status) {}
    mesatee_status status() const noexcept { return status_; }

private:
    mesatee_status status_;
};
#endif

// A value or a failure (status and message): what calls return without exceptions.
template <typename T>
class Result {
public:
    Result(T value) : value_(std::move(value)) {}  // NOLINT: implicit by design
    static Result failure(mesatee_status status, std::string message) {
        Result r;
        r.status_ = status;
        r.message_ = std::move(message);
        return r;
    }
    bool ok() const { return status_ == MESATEE_OK; }
    explicit operator bool() const { return ok(); }
    mesatee_status status() const { return status_; }
    const std::string& message() const { return message_; }
    T& value() & { return value_; }
    T&& value() && { return std::move(value_); }

private:
    Result() = default;
    T value_{};
    mesatee_status status_ = MESATEE_OK;
    std::string message_;
};

struct Identity {
    Bytes mrenclave, mrsigner;
    uint16_t product_id = 0;
    uint16_t security_version = 0;
    bool debug = false;
    mesatee_platform_kind platform = MESATEE_PLATFORM_SOFTWARE;
};

struct PublicKeys {
    Bytes hpke, signing;
};

struct EnclaveOptions {
    std::string image_path;      // required
    std::string signature_path;  // empty: image_path + ".sig"
    std::string platform_dir;    // empty: $MESATEE_HOME, else the user's data folder
    Bytes sealed_state;          // empty: fresh keys
};

struct Policy {
    Bytes mrenclave, mrsigner;  // 32 bytes, or empty
    bool has_product_id = false;
    uint16_t product_id = 0;
    uint16_t min_security_version = 0;
    bool allow_debug = false;
    bool allow_software = false;
    std::vector<Bytes> trusted_roots;  // DER
};

struct Claims {
    Identity identity;
    PublicKeys keys;
    Bytes nonce;
};

inline Identity to_identity(const mesatee_identity& id) {
    return {Bytes(id.mrenclave, id.mrenclave + 32), Bytes(id.mrsigner, id.mrsigner + 32), id.product_id,
            id.security_version, id.debug != 0, static_cast<mesatee_platform_kind>(id.platform)};
}

// The calls below differ by mode (throwing, or returning Result): each mode
// lives in its own inline namespace, so a program may mix translation units
// built either way without two definitions of one symbol.
#ifndef MESATEE_NO_EXCEPTIONS
inline namespace throwing {
#else
inline namespace returning {
#endif

namespace detail {

#ifndef MESATEE_NO_EXCEPTIONS
template <typename T>
using Returned = T;
template <typename T>
T finish(mesatee_status status, T value) {
    if (status != MESATEE_OK) throw Error(status, last_error_message());
    return value;
}
#else
template <typename T>
using Returned = Result<T>;
template <typename T>
Result<T> finish(mesatee_status status, T value) {
    if (status != MESATEE_OK) return Result<T>::failure(status, last_error_message());
    return Result<T>(std::move(value));
}
#endif

// Takes a library-allocated buffer: copied into a vector, then freed.
inline Bytes take(mesatee_buffer& buffer) {
    Bytes out(buffer.data, buffer.data + buffer.size);
    mesatee_buffer_free(&buffer);
    return out;
}

template <typename Call>
detail::Returned<Bytes> buffer_call(Call&& call) {
    mesatee_buffer buffer{nullptr, 0};
    mesatee_status status = call(&buffer);
    Bytes out = take(buffer);
    return finish(status, std::move(out));
}

}  // namespace detail

// An enclave instance; closed when destroyed. Movable, not copyable.
class Enclave {
public:
    static detail::Returned<Enclave> open(const EnclaveOptions& options) {
        mesatee_enclave_config config{};
        config.image_path = options.image_path.c_str();
        config.signature_path = options.signature_path.empty() ? nullptr : options.signature_path.c_str();
        config.platform_dir = options.platform_dir.empty() ? nullptr : options.platform_dir.c_str();
        config.sealed_state = options.sealed_state.data();
        config.sealed_state_size = options.sealed_state.size();
        mesatee_enclave* handle = nullptr;
        mesatee_status status = mesatee_enclave_open(&config, &handle);
        return detail::finish(status, Enclave(handle));
    }

    Enclave() = default;
    Enclave(Enclave&& other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}
    Enclave& operator=(Enclave&& other) noexcept {
        if (this != &other) {
            mesatee_enclave_close(handle_);
            handle_ = std::exchange(other.handle_, nullptr);
        }
        return *this;
    }
    Enclave(const Enclave&) = delete;
    Enclave& operator=(const Enclave&) = delete;
    ~Enclave() { mesatee_enclave_close(handle_); }

    mesatee_enclave* handle() const { return handle_; }

    detail::Returned<Identity> identity() const {
        mesatee_identity id{};
        mesatee_status status = mesatee_enclave_identity(handle_, &id);
        return detail::finish(status, to_identity(id));
    }

    detail::Returned<PublicKeys> public_keys() const {
        PublicKeys keys{Bytes(32), Bytes(32)};
        mesatee_status status = mesatee_enclave_public_keys(handle_, keys.hpke.data(), keys.signing.data());
        return detail::finish(status, std::move(keys));
    }

    detail::Returned<Bytes> sealed_state() const {
        return detail::buffer_call([&](mesatee_buffer* b) { return mesatee_enclave_sealed_state(handle_, b); });
    }

    detail::Returned<Bytes> evidence(ByteSpan nonce = {}) const {
        return detail::buffer_call(
            [&](mesatee_buffer* b) { return mesatee_enclave_evidence(handle_, nonce.data, nonce.size, b); });
    }

    detail::Returned<Bytes> seal(ByteSpan plaintext, ByteSpan aad = {},
                                 mesatee_seal_policy policy = MESATEE_SEAL_PRODUCT) const {
        Bytes out(mesatee_sealed_size(plaintext.size));
        size_t size = 0;
        mesatee_status status = mesatee_enclave_seal(handle_, policy, plaintext.data, plaintext.size, aad.data,
                                                     aad.size, out.data(), out.size(), &size);
        out.resize(status == MESATEE_OK ? size : 0);
        return detail::finish(status, std::move(out));
    }

    detail::Returned<Bytes> unseal(ByteSpan blob, ByteSpan aad = {}) const {
        Bytes out(mesatee_unsealed_capacity(blob.size));
        size_t size = 0;
        mesatee_status status =
            mesatee_enclave_unseal(handle_, blob.data, blob.size, aad.data, aad.size, out.data(), out.size(), &size);
        out.resize(status == MESATEE_OK ? size : 0);
        return detail::finish(status, std::move(out));
    }

    detail::Returned<Bytes> invoke(ByteSpan invocation) const {
        return detail::buffer_call(
            [&](mesatee_buffer* b) { return mesatee_enclave_invoke(handle_, invocation.data, invocation.size, b); });
    }

    detail::Returned<Bytes> functions() const {
        return detail::buffer_call([&](mesatee_buffer* b) { return mesatee_enclave_functions(handle_, b); });
    }

private:
    explicit Enclave(mesatee_enclave* handle) : handle_(handle) {}
    mesatee_enclave* handle_ = nullptr;
};

// The C++ evidence verifier. nonce: nullptr when any nonce is acceptable.
inline detail::Returned<Claims> verify_evidence(ByteSpan evidence, const Policy& policy,
                                                const Bytes* nonce = nullptr, int64_t at_time = 0) {
    std::vector<mesatee_bytes> roots;
    for (const Bytes& root : policy.trusted_roots) roots.push_back({root.data(), root.size()});
    mesatee_attestation_policy native{};
    native.mrenclave = policy.mrenclave.empty() ? nullptr : policy.mrenclave.data();
    native.mrsigner = policy.mrsigner.empty() ? nullptr : policy.mrsigner.data();
    native.has_product_id = policy.has_product_id;
    native.product_id = policy.product_id;
    native.min_security_version = policy.min_security_version;
    native.allow_debug = policy.allow_debug;
    native.allow_software = policy.allow_software;
    native.trusted_roots = roots.data();
    native.trusted_root_count = roots.size();
    mesatee_verified_claims out{};
    mesatee_status status = mesatee_verify_evidence(evidence.data, evidence.size, nonce ? nonce->data() : nullptr,
                                                    nonce ? nonce->size() : 0, &native, at_time, &out);
    Claims claims{to_identity(out.identity), {Bytes(out.hpke_public_key, out.hpke_public_key + 32),
                                              Bytes(out.signing_public_key, out.signing_public_key + 32)},
                  Bytes(out.nonce, out.nonce + out.nonce_size)};
    return detail::finish(status, std::move(claims));
}

inline detail::Returned<Bytes> platform_root_certificate(const std::string& platform_dir = {}) {
    return detail::buffer_call([&](mesatee_buffer* b) {
        return mesatee_platform_root_certificate(platform_dir.empty() ? nullptr : platform_dir.c_str(), b);
    });
}

}  // inline namespace

}  // namespace mesatee

#endif
