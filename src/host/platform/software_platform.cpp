#include "platform/software_platform.hpp"

#include <fcntl.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <pwd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "report.hpp"

namespace mesatee::host {
namespace {

constexpr char kSealRoot[] = "seal_root.bin";
constexpr char kAttestationKey[] = "attestation_key.pem";
constexpr char kAttestationCert[] = "attestation_cert.der";
constexpr char kRootCert[] = "root_cert.der";

[[noreturn]] void platform_fail(const std::string& msg) { fail(MESATEE_ERROR_PLATFORM, msg); }

std::string sys_error() { return std::strerror(errno); }

class Fd {
public:
    explicit Fd(int fd) : fd_(fd) {}
    ~Fd() {
        if (fd_ >= 0) ::close(fd_);
    }
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    int get() const { return fd_; }

private:
    int fd_;
};

void make_folder(const std::string& path) {
    // Parents as the user's umask allows; the platform folder itself owner-only.
    for (size_t pos = 1; (pos = path.find('/', pos)) != std::string::npos; ++pos) {
        std::string parent = path.substr(0, pos);
        if (::mkdir(parent.c_str(), 0755) != 0 && errno != EEXIST)
            platform_fail("cannot create " + parent + ": " + sys_error());
    }
    if (::mkdir(path.c_str(), 0700) != 0 && errno != EEXIST)
        platform_fail("cannot create platform folder " + path + ": " + sys_error());
}

void check_private(const std::string& path, bool is_folder) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) platform_fail("cannot stat " + path + ": " + sys_error());
    if (is_folder != S_ISDIR(st.st_mode)) platform_fail(path + (is_folder ? " is not a folder" : " is not a file"));
    if (st.st_uid != ::geteuid()) platform_fail(path + " belongs to another user");
    if (st.st_mode & 077) {
        char mode[8];
        std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
        platform_fail(path + " is accessible by other users (mode " + mode + "); it must be " +
                      (is_folder ? "0700" : "0600"));
    }
}

Bytes read_file(const std::string& path, size_t max_size) {
    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.get() < 0) platform_fail("cannot read " + path + ": " + sys_error());
    Bytes out;
    uint8_t buf[4096];
    for (;;) {
        ssize_t n = ::read(fd.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) platform_fail("cannot read " + path + ": " + sys_error());
        if (n == 0) break;
        out.insert(out.end(), buf, buf + n);
        if (out.size() > max_size) platform_fail(path + " is larger than expected");
    }
    return out;
}

// temp file, fsync, rename: a crash leaves the old file or the new one, never half of one.
void write_file_atomic(const std::string& path, ByteView data) {
    std::string tmp = path + ".tmp";
    Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (fd.get() < 0) platform_fail("cannot write " + tmp + ": " + sys_error());
    for (size_t done = 0; done < data.size;) {
        ssize_t n = ::write(fd.get(), data.data + done, data.size - done);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) platform_fail("cannot write " + tmp + ": " + sys_error());
        done += static_cast<size_t>(n);
    }
    if (::fsync(fd.get()) != 0) platform_fail("cannot sync " + tmp + ": " + sys_error());
    if (::rename(tmp.c_str(), path.c_str()) != 0) platform_fail("cannot rename " + tmp + ": " + sys_error());
}

PkeyPtr generate_p256() {
    PkeyPtr key(EVP_EC_gen("P-256"));
    if (!key) crypto_fail("P-256 key generation");
    return key;
}

void add_extension(X509* cert, X509* issuer, int nid, const char* value) {
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
    OsslPtr<X509_EXTENSION, X509_EXTENSION_free> ext(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value));
    if (!ext || !X509_add_ext(cert, ext.get(), -1)) crypto_fail("certificate extension");
}

Bytes make_certificate(EVP_PKEY* subject_key, const std::string& subject_cn, EVP_PKEY* issuer_key,
                       X509* issuer_cert, bool ca) {
    X509Ptr cert(X509_new());
    if (!cert) crypto_fail("certificate");
    check_ossl(X509_set_version(cert.get(), X509_VERSION_3), "certificate version");
    uint8_t serial[16];
    random_bytes(serial, sizeof serial);
    serial[0] &= 0x7f;  // a positive INTEGER
    OsslPtr<BIGNUM, BN_free> bn(BN_bin2bn(serial, sizeof serial, nullptr));
    if (!bn || !BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(cert.get()))) crypto_fail("certificate serial");
    OsslPtr<X509_NAME, X509_NAME_free> name(X509_NAME_new());
    if (!name || !X509_NAME_add_entry_by_txt(name.get(), "CN", MBSTRING_UTF8,
                                             reinterpret_cast<const unsigned char*>(subject_cn.c_str()), -1, -1, 0))
        crypto_fail("certificate name");
    check_ossl(X509_set_subject_name(cert.get(), name.get()), "certificate subject");
    check_ossl(X509_set_issuer_name(cert.get(), issuer_cert ? X509_get_subject_name(issuer_cert) : name.get()),
               "certificate issuer");
    if (!X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600) ||
        !X509_time_adj_ex(X509_getm_notAfter(cert.get()), 20 * 365, 0, nullptr))
        crypto_fail("certificate validity");
    check_ossl(X509_set_pubkey(cert.get(), subject_key), "certificate key");
    X509* issuer = issuer_cert ? issuer_cert : cert.get();
    add_extension(cert.get(), issuer, NID_basic_constraints, ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
    add_extension(cert.get(), issuer, NID_key_usage, ca ? "critical,keyCertSign" : "critical,digitalSignature");
    if (X509_sign(cert.get(), issuer_key, EVP_sha256()) <= 0) crypto_fail("certificate signing");
    unsigned char* der = nullptr;
    int n = i2d_X509(cert.get(), &der);
    if (n <= 0) crypto_fail("certificate encoding");
    Bytes out(der, der + n);
    OPENSSL_free(der);
    return out;
}

using MacCtxPtr = OsslPtr<EVP_MAC_CTX, EVP_MAC_CTX_free>;

// An HMAC-SHA256 context keyed once; each use works on a copy of it.
MacCtxPtr hmac_sha256_keyed(ByteView key) {
    static EVP_MAC* mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
    if (!mac) crypto_fail("HMAC fetch");
    MacCtxPtr ctx(EVP_MAC_CTX_new(mac));
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0), OSSL_PARAM_END};
    if (!ctx || EVP_MAC_init(ctx.get(), key.data, key.size, params) != 1) crypto_fail("HMAC-SHA256 init");
    return ctx;
}

void hmac_sha256(const EVP_MAC_CTX* keyed, ByteView data, uint8_t out[32]) {
    MacCtxPtr ctx(EVP_MAC_CTX_dup(keyed));
    size_t n = 0;
    if (!ctx || EVP_MAC_update(ctx.get(), data.data, data.size) != 1 || EVP_MAC_final(ctx.get(), out, &n, 32) != 1)
        crypto_fail("HMAC-SHA256");
}

}  // namespace

SoftwarePlatform::~SoftwarePlatform() = default;

std::string SoftwarePlatform::default_folder() {
    if (const char* env = std::getenv("MESATEE_HOME"); env && *env) return env;
    if (const char* xdg = std::getenv("XDG_DATA_HOME"); xdg && *xdg) return std::string(xdg) + "/mesatee/platform";
    const char* home = std::getenv("HOME");
    if (!home || !*home) {
        const passwd* pw = ::getpwuid(::geteuid());
        if (!pw) platform_fail("cannot find a home folder for the platform; set MESATEE_HOME");
        home = pw->pw_dir;
    }
    return std::string(home) + "/.local/share/mesatee/platform";
}

std::shared_ptr<SoftwarePlatform> SoftwarePlatform::open(const char* folder) {
    std::shared_ptr<SoftwarePlatform> p(new SoftwarePlatform());
    p->folder_ = folder && *folder ? folder : default_folder();
    while (p->folder_.size() > 1 && p->folder_.back() == '/') p->folder_.pop_back();
    make_folder(p->folder_);
    check_private(p->folder_, true);
    // One process creates the files; the others wait and then read them.
    std::string lock_path = p->folder_ + "/.lock";
    Fd lock(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    if (lock.get() < 0) platform_fail("cannot open " + lock_path + ": " + sys_error());
    while (::flock(lock.get(), LOCK_EX) != 0)
        if (errno != EINTR) platform_fail("cannot lock " + lock_path + ": " + sys_error());
    if (::access((p->folder_ + "/" + kSealRoot).c_str(), F_OK) != 0) p->create_files();
    p->load_files();
    return p;
}

void SoftwarePlatform::create_files() const {
    PkeyPtr root_key = generate_p256();
    uint8_t tag[8];
    random_bytes(tag, sizeof tag);
    Bytes root_der = make_certificate(root_key.get(), "mesatee software platform root " + hex(ByteView(tag, 8)),
                                      root_key.get(), nullptr, true);
    X509Ptr root = parse_certificate(root_der);
    PkeyPtr att_key = generate_p256();
    Bytes att_der = make_certificate(att_key.get(), "mesatee software attestation key", root_key.get(), root.get(), false);
    OsslPtr<BIO, BIO_free> bio(BIO_new(BIO_s_mem()));
    if (!bio || !PEM_write_bio_PrivateKey(bio.get(), att_key.get(), nullptr, nullptr, 0, nullptr, nullptr))
        crypto_fail("attestation key encoding");
    char* pem = nullptr;
    long pem_size = BIO_get_mem_data(bio.get(), &pem);
    std::string dir = folder_ + "/";
    write_file_atomic(dir + kRootCert, root_der);
    write_file_atomic(dir + kAttestationCert, att_der);
    write_file_atomic(dir + kAttestationKey, ByteView(reinterpret_cast<uint8_t*>(pem), static_cast<size_t>(pem_size)));
    SecretBytes seal_root(32);
    random_bytes(seal_root.data(), 32);
    write_file_atomic(dir + kSealRoot, seal_root.view());  // last: its presence marks a complete folder
}

void SoftwarePlatform::load_files() {
    std::string dir = folder_ + "/";
    check_private(dir + kSealRoot, false);
    check_private(dir + kAttestationKey, false);
    Bytes seal_root = read_file(dir + kSealRoot, 64);
    if (seal_root.size() != 32) platform_fail(dir + kSealRoot + " must hold exactly 32 bytes");
    // HKDF-Extract with an empty salt (RFC 5869: HashLen zero bytes).
    uint8_t zeros[32] = {};
    SecretBytes prk(32);
    hmac_sha256(hmac_sha256_keyed(ByteView(zeros, 32)).get(), seal_root, prk.data());
    OPENSSL_cleanse(seal_root.data(), seal_root.size());
    seal_hmac_ = hmac_sha256_keyed(prk.view());
    Bytes pem = read_file(dir + kAttestationKey, 4096);
    OsslPtr<BIO, BIO_free> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
    attestation_key_.reset(bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr) : nullptr);
    OPENSSL_cleanse(pem.data(), pem.size());
    if (!attestation_key_) {
        ERR_clear_error();
        platform_fail(dir + kAttestationKey + " does not hold a valid private key");
    }
    attestation_cert_ = read_file(dir + kAttestationCert, 4096);
    root_cert_ = read_file(dir + kRootCert, 4096);
    if (!parse_certificate(attestation_cert_) || !parse_certificate(root_cert_))
        platform_fail("the platform's certificates in " + folder_ + " are damaged");
}

void SoftwarePlatform::seal_key(const mesatee_sw_identity& id, uint32_t policy, ByteView key_id,
                                uint16_t security_version, uint8_t key[32]) const {
    if (security_version > id.security_version)
        fail(MESATEE_ERROR_SEAL_VERSION, "seal key requested for a security version above the enclave's own");
    if ((policy != MESATEE_SEAL_UNIQUE && policy != MESATEE_SEAL_PRODUCT) || key_id.size != 32)
        fail(MESATEE_ERROR_INVALID_ARGUMENT, "bad seal key request");
    bool unique = policy == MESATEE_SEAL_UNIQUE;
    // HKDF-Expand for one block: T(1) = HMAC(PRK, info ‖ 0x01).
    Bytes info;
    Writer(info).text("mesatee/seal/v1").u8(static_cast<uint8_t>(policy)).u8(id.debug ? 1 : 0)
        .bytes(ByteView(unique ? id.mrenclave : id.mrsigner, 32)).u16(unique ? 0 : id.product_id)
        .u16(security_version).bytes(key_id).u8(1);
    hmac_sha256(seal_hmac_.get(), info, key);
}

Bytes SoftwarePlatform::evidence(const mesatee_sw_identity& id, ByteView report_data) const {
    Report report;
    report.platform = MESATEE_PLATFORM_SOFTWARE;
    report.debug = id.debug != 0;
    report.mrenclave.assign(id.mrenclave, id.mrenclave + 32);
    report.mrsigner.assign(id.mrsigner, id.mrsigner + 32);
    report.product_id = id.product_id;
    report.security_version = id.security_version;
    report.report_data = report_data.to_bytes();
    Bytes body = report.encode();
    Bytes signature = ecdsa_p256_sign(attestation_key_.get(), body);
    Bytes out;
    Writer(out).bytes(body).bytes(signature).u16(static_cast<uint16_t>(attestation_cert_.size()))
        .bytes(attestation_cert_).u16(static_cast<uint16_t>(root_cert_.size())).bytes(root_cert_);
    return out;
}

}  // namespace mesatee::host
