// A C++ service that embeds mesatee with no Python in the process.
//
//   cpp_service DIR start    opens the enclave (platform and sealed state in DIR), prints its
//                            identity, checks sealing and its own evidence, and writes
//                            DIR/evidence.bin (for DIR/nonce.bin, if present) and DIR/root.der
//   cpp_service DIR invoke   runs DIR/invocation.bin (prepared by the parties) and writes
//                            DIR/result.bin for them to open
//
// The parties never trust this program: they verify the evidence, and the
// enclave checks their approvals and grants itself.
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>

#include <mesatee/mesatee.hpp>

namespace {

mesatee::Bytes read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return mesatee::Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

bool exists(const std::string& path) { return std::ifstream(path).good(); }

void write_file(const std::string& path, const mesatee::Bytes& data) {
    std::string tmp = path + ".tmp";
    {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        out.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
        if (!out) throw std::runtime_error("cannot write " + tmp);
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0) throw std::runtime_error("cannot write " + path);
}

std::string hex(const mesatee::Bytes& b) {
    static const char digits[] = "0123456789abcdef";
    std::string out;
    for (uint8_t x : b) (out += digits[x >> 4]) += digits[x & 15];
    return out;
}

mesatee::Enclave open(const std::string& dir) {
    std::string state = dir + "/enclave.state";
    mesatee::Enclave enclave = mesatee::Enclave::open(
        {MESATEE_ENCLAVE_IMAGE, "", dir + "/platform", exists(state) ? read_file(state) : mesatee::Bytes{}});
    write_file(state, enclave.sealed_state());  // the same keys next time
    return enclave;
}

int start(const std::string& dir) {
    mesatee::Enclave enclave = open(dir);
    mesatee::Identity id = enclave.identity();
    std::printf("mrenclave %s\nmrsigner %s\nproduct %u, security version %u%s\n", hex(id.mrenclave).c_str(),
                hex(id.mrsigner).c_str(), id.product_id, id.security_version, id.debug ? ", debug" : "");
    if (enclave.unseal(enclave.seal(std::string("service state"))) != mesatee::Bytes{'s', 'e', 'r', 'v', 'i', 'c', 'e', ' ', 's', 't', 'a', 't', 'e'})
        throw std::runtime_error("sealing did not round-trip");

    mesatee::Bytes nonce = exists(dir + "/nonce.bin") ? read_file(dir + "/nonce.bin") : mesatee::Bytes{};
    mesatee::Bytes evidence = enclave.evidence(nonce);
    mesatee::Bytes root = mesatee::platform_root_certificate(dir + "/platform");
    mesatee::Policy policy;
    policy.mrenclave = id.mrenclave;
    policy.allow_software = true;
    policy.trusted_roots = {root};
    mesatee::Claims claims = mesatee::verify_evidence(evidence, policy, &nonce);
    std::printf("evidence verified: hpke key %s\n", hex(claims.keys.hpke).c_str());
    write_file(dir + "/evidence.bin", evidence);
    write_file(dir + "/root.der", root);
    return 0;
}

int invoke(const std::string& dir) {
    mesatee::Enclave enclave = open(dir);
    mesatee::Bytes result = enclave.invoke(read_file(dir + "/invocation.bin"));
    write_file(dir + "/result.bin", result);
    std::printf("task done: %zu bytes of result for the parties\n", result.size());
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: %s DIR start|invoke\n", argv[0]);
        return 2;
    }
    try {
        std::string command = argv[2];
        if (command == "start") return start(argv[1]);
        if (command == "invoke") return invoke(argv[1]);
        std::fprintf(stderr, "unknown command %s\n", argv[2]);
        return 2;
    } catch (const mesatee::Error& e) {
        std::fprintf(stderr, "mesatee: %s (%s)\n", e.what(), mesatee_status_name(e.status()));
        return 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
}
