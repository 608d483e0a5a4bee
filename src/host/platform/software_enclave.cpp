#include "platform/software_enclave.hpp"

#include <dlfcn.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

extern "C" int mesatee_bridge_call(mesatee_bridge* bridge, uint32_t function_id, void* args, size_t args_size) {
    if (!bridge) return MESATEE_ERROR_BOUNDARY;
    return bridge->call(function_id, args, args_size);
}

namespace mesatee::host {
namespace {

constexpr size_t kSignatureFileSize = 148;
constexpr size_t kSignedPart = 84;

struct SignatureFile {
    bool debug = false;
    uint16_t product_id = 0, security_version = 0;
    uint64_t image_size = 0;
    Bytes mrenclave, signer_key;
};

constexpr size_t kMaxImageSize = size_t(256) << 20;

// Reads a whole file, refusing one that cannot be opened or is larger than limit.
Bytes read_file(const std::string& path, const char* what, size_t limit, mesatee_status status) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail(status, std::string("cannot open ") + what + " " + path + ": " + std::strerror(errno));
    struct Closer {
        int fd;
        ~Closer() { ::close(fd); }
    } closer{fd};
    Bytes out;
    uint8_t buf[1 << 16];
    for (;;) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) fail(status, "cannot read " + path + ": " + std::strerror(errno));
        if (n == 0) return out;
        out.insert(out.end(), buf, buf + n);
        if (out.size() > limit) fail(status, path + " is larger than " + std::to_string(limit) + " bytes");
    }
}

// Maps exactly the bytes that were measured: they go into a sealed memfd that
// nobody can change, under a name no loaded object holds (glibc hands back an
// already loaded object whose name matches, whatever file the name now means).
void* map_image(const Bytes& image, const std::string& image_path) {
    int fd = ::memfd_create("mesatee-enclave", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0) fail(MESATEE_ERROR_IMAGE_LOAD, std::string("memfd_create failed: ") + std::strerror(errno));
    struct Closer {
        int& fd;
        ~Closer() { ::close(fd); }
    } closer{fd};
    for (size_t done = 0; done < image.size();) {
        ssize_t n = ::write(fd, image.data() + done, image.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) fail(MESATEE_ERROR_IMAGE_LOAD, std::string("cannot copy the image: ") + std::strerror(errno));
        done += static_cast<size_t>(n);
    }
    if (::fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0)
        fail(MESATEE_ERROR_IMAGE_LOAD, std::string("cannot seal the image copy: ") + std::strerror(errno));
    // Closed images can stay loaded (their thread-local destructors pin them while the threads that used them
    // live), each keeping its name: walk up the descriptor numbers, as far as the open-file limit allows.
    for (;;) {
        std::string name = "/proc/self/fd/" + std::to_string(fd);
        if (void* stale = ::dlopen(name.c_str(), RTLD_LAZY | RTLD_NOLOAD)) {
            ::dlclose(stale);
            int next = ::fcntl(fd, F_DUPFD_CLOEXEC, fd + 1);
            if (next < 0) break;
            ::close(fd);
            fd = next;
            continue;
        }
        void* handle = ::dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
        if (!handle) {
            const char* why = ::dlerror();
            fail(MESATEE_ERROR_IMAGE_LOAD, "cannot load " + image_path + ": " + (why ? why : "unknown error"));
        }
        return handle;
    }
    fail(MESATEE_ERROR_IMAGE_LOAD, "no unused name to load " + image_path +
                                       " under /proc/self/fd: every descriptor number up to the open-file limit "
                                       "names an image loaded before");
}

SignatureFile parse_signature(ByteView data, const std::string& path) {
    Reader r(data, "signature file", MESATEE_ERROR_SIGNATURE_INVALID);
    if (data.size != kSignatureFileSize)
        r.reject(path + " has " + std::to_string(data.size) + " bytes, expected " + std::to_string(kSignatureFileSize));
    r.expect(literal("MTSG"), "magic");
    if (r.u16("version") != 1) r.reject("unsupported version");
    SignatureFile sig;
    uint8_t flags = r.u8("flags");
    if ((flags & ~1u) || r.u8("reserved") != 0) r.reject("reserved bits are set");
    sig.debug = flags & 1u;
    sig.product_id = r.u16("product id");
    sig.security_version = r.u16("security version");
    sig.image_size = r.u64("image size");
    sig.mrenclave = r.take(32, "mrenclave").to_bytes();
    sig.signer_key = r.take(32, "signer key").to_bytes();
    ByteView signature = r.take(64, "signature");
    PkeyPtr key(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, sig.signer_key.data(), 32));
    MdCtxPtr ctx(EVP_MD_CTX_new());
    bool ok = key && ctx && EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, key.get()) == 1 &&
              EVP_DigestVerify(ctx.get(), signature.data, 64, data.data, kSignedPart) == 1;
    ERR_clear_error();
    if (!ok) r.reject("the signature in " + path + " does not verify");
    return sig;
}

template <typename Fn>
int service_guard(Fn&& fn) {
    try {
        fn();
        return MESATEE_OK;
    } catch (const Error& e) {
        return e.status();
    } catch (...) {
        return MESATEE_ERROR_INTERNAL;
    }
}

}  // namespace

std::unique_ptr<SoftwareEnclave> SoftwareEnclave::load(const std::string& image_path,
                                                       const std::string& signature_path,
                                                       std::shared_ptr<SoftwarePlatform> platform) {
    Bytes sig_bytes = read_file(signature_path, "signature file", 4096, MESATEE_ERROR_SIGNATURE_INVALID);
    SignatureFile sig = parse_signature(sig_bytes, signature_path);

    std::unique_ptr<SoftwareEnclave> e(new SoftwareEnclave());
    Bytes image = read_file(image_path, "enclave image", kMaxImageSize, MESATEE_ERROR_IMAGE_LOAD);
    if (image.size() != sig.image_size)
        fail(MESATEE_ERROR_SIGNATURE_MISMATCH, signature_path + " belongs to another image: it signs " +
                                                   std::to_string(sig.image_size) + " bytes, " + image_path + " has " +
                                                   std::to_string(image.size()));
    Bytes mrenclave = sha256(image);
    if (ByteView(mrenclave) != ByteView(sig.mrenclave))
        fail(MESATEE_ERROR_IMAGE_MODIFIED, image_path + " was modified after signing: its SHA-256 is " +
                                               hex(mrenclave) + ", the signature measured " + hex(sig.mrenclave));
    e->handle_ = map_image(image, image_path);
    auto create = reinterpret_cast<mesatee_sw_create_fn>(::dlsym(e->handle_, MESATEE_SW_CREATE_SYMBOL));
    e->call_ = reinterpret_cast<mesatee_sw_call_fn>(::dlsym(e->handle_, MESATEE_SW_CALL_SYMBOL));
    e->destroy_ = reinterpret_cast<mesatee_sw_destroy_fn>(::dlsym(e->handle_, MESATEE_SW_DESTROY_SYMBOL));
    if (!create || !e->call_ || !e->destroy_)
        fail(MESATEE_ERROR_IMAGE_LOAD, image_path + " is not a mesatee software enclave (entry points missing)");

    e->platform_ = std::move(platform);
    mesatee_sw_identity& id = e->services_.identity;
    std::memcpy(id.mrenclave, mrenclave.data(), 32);
    Bytes mrsigner = sha256(sig.signer_key);
    std::memcpy(id.mrsigner, mrsigner.data(), 32);
    id.product_id = sig.product_id;
    id.security_version = sig.security_version;
    id.debug = sig.debug ? 1 : 0;
    e->services_.abi_version = MESATEE_SW_ABI_VERSION;
    e->services_.context = e.get();
    e->services_.seal_key = &SoftwareEnclave::seal_key_service;
    e->services_.evidence = &SoftwareEnclave::evidence_service;
    if (int status = create(&e->services_, &e->instance_); status != MESATEE_OK)
        fail(static_cast<mesatee_status>(status), "the enclave refused to start");
    return e;
}

SoftwareEnclave::~SoftwareEnclave() {
    if (instance_) destroy_(instance_);
    if (handle_) ::dlclose(handle_);
}

int SoftwareEnclave::call(uint32_t function_id, void* args, size_t args_size) {
    return call_(instance_, function_id, args, args_size);
}

int SoftwareEnclave::seal_key_service(void* context, uint32_t policy, const uint8_t key_id[32], uint16_t version,
                                      uint8_t key[32]) {
    auto* self = static_cast<SoftwareEnclave*>(context);
    return service_guard([&] { self->platform_->seal_key(self->identity(), policy, ByteView(key_id, 32), version, key); });
}

int SoftwareEnclave::evidence_service(void* context, const uint8_t report_data[64], uint8_t* out, size_t capacity,
                                      size_t* out_size) {
    auto* self = static_cast<SoftwareEnclave*>(context);
    return service_guard([&] {
        Bytes evidence = self->platform_->evidence(self->identity(), ByteView(report_data, 64));
        *out_size = evidence.size();
        if (evidence.size() > capacity) fail(MESATEE_ERROR_BUFFER_TOO_SMALL, "evidence needs more room");
        std::memcpy(out, evidence.data(), evidence.size());
    });
}

}  // namespace mesatee::host
