#include "report.hpp"

#include <openssl/bn.h>
#include <openssl/ecdsa.h>

namespace mesatee::host {

Bytes Report::encode() const {
    Bytes out;
    Writer(out).text("MTRP").u16(1).u8(static_cast<uint8_t>(platform)).u8(debug ? 1 : 0).bytes(mrenclave)
        .bytes(mrsigner).u16(product_id).u16(security_version).bytes(report_data);
    return out;
}

Report Report::parse(ByteView bytes) {
    Reader r(bytes, "report", MESATEE_ERROR_EVIDENCE_MALFORMED);
    r.expect(literal("MTRP"), "magic");
    if (r.u16("version") != 1) r.reject("unsupported report version");
    Report report;
    uint8_t platform = r.u8("platform");
    if (platform != MESATEE_PLATFORM_SOFTWARE) r.reject("report platform " + std::to_string(platform) + " is not software");
    uint8_t flags = r.u8("flags");
    if (flags & ~1u) r.reject("reserved report flags are set");
    report.debug = flags & 1u;
    report.mrenclave = r.take(32, "mrenclave").to_bytes();
    report.mrsigner = r.take(32, "mrsigner").to_bytes();
    report.product_id = r.u16("product id");
    report.security_version = r.u16("security version");
    report.report_data = r.take(MESATEE_REPORT_DATA_SIZE, "report data").to_bytes();
    r.expect_end();
    return report;
}

Bytes ecdsa_p256_sign(EVP_PKEY* key, ByteView message) {
    MdCtxPtr ctx(EVP_MD_CTX_new());
    size_t der_size = 0;
    if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key) != 1 ||
        EVP_DigestSign(ctx.get(), nullptr, &der_size, message.data, message.size) != 1)
        crypto_fail("ECDSA sign");
    Bytes der(der_size);
    check_ossl(EVP_DigestSign(ctx.get(), der.data(), &der_size, message.data, message.size), "ECDSA sign");
    const unsigned char* p = der.data();
    OsslPtr<ECDSA_SIG, ECDSA_SIG_free> sig(d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der_size)));
    if (!sig) crypto_fail("ECDSA signature decoding");
    Bytes raw(kRawSignatureSize);
    if (BN_bn2binpad(ECDSA_SIG_get0_r(sig.get()), raw.data(), 32) != 32 ||
        BN_bn2binpad(ECDSA_SIG_get0_s(sig.get()), raw.data() + 32, 32) != 32)
        crypto_fail("ECDSA signature encoding");
    return raw;
}

bool ecdsa_p256_verify(EVP_PKEY* key, ByteView message, ByteView raw) {
    if (raw.size != kRawSignatureSize) return false;
    OsslPtr<ECDSA_SIG, ECDSA_SIG_free> sig(ECDSA_SIG_new());
    BIGNUM* r = BN_bin2bn(raw.data, 32, nullptr);
    BIGNUM* s = BN_bin2bn(raw.data + 32, 32, nullptr);
    if (!sig || !r || !s || ECDSA_SIG_set0(sig.get(), r, s) != 1) {
        BN_free(r);
        BN_free(s);
        crypto_fail("ECDSA signature decoding");
    }
    unsigned char* der = nullptr;
    int der_size = i2d_ECDSA_SIG(sig.get(), &der);
    if (der_size <= 0) crypto_fail("ECDSA signature encoding");
    MdCtxPtr ctx(EVP_MD_CTX_new());
    bool ok = ctx && EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key) == 1 &&
              EVP_DigestVerify(ctx.get(), der, static_cast<size_t>(der_size), message.data, message.size) == 1;
    OPENSSL_free(der);
    ERR_clear_error();
    return ok;
}

X509Ptr parse_certificate(ByteView der) {
    const unsigned char* p = der.data;
    X509Ptr cert(d2i_X509(nullptr, &p, static_cast<long>(der.size)));
    if (!cert || p != der.data + der.size) {
        ERR_clear_error();
        return nullptr;
    }
    return cert;
}

}  // namespace mesatee::host
