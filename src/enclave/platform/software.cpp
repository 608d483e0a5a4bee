// The software platform's trusted runtime: the image's exported entry points
// and the platform services, answered from the table the loader passed in.
// Several instances of one image may live in a process (dlopen shares the
// image), so all enclave state hangs off an instance, made current for the
// duration of each ecall.
#include "platform/software_abi.h"

#include <memory>

#include "enclave_state.hpp"
#include "mesatee_t.h"
#include "platform/platform.hpp"

namespace mesatee {
namespace {

struct Instance {
    mesatee_sw_platform services;
    EnclaveIdentity identity;
    EnclaveState state;
};

thread_local Instance* current = nullptr;

Instance& instance() {
    if (!current) fail(MESATEE_ERROR_INTERNAL, "no enclave instance is current on this thread");
    return *current;
}

}  // namespace

namespace platform {

const EnclaveIdentity& identity() { return instance().identity; }

EnclaveState& state() { return instance().state; }

void seal_key(mesatee_seal_policy policy, ByteView key_id, uint16_t security_version, SecretBytes& key) {
    const mesatee_sw_platform& s = instance().services;
    if (key_id.size != 32 || key.size() != 32) fail(MESATEE_ERROR_INTERNAL, "seal key request has wrong sizes");
    int status = s.seal_key(s.context, policy, key_id.data, security_version, key.data());
    if (status != MESATEE_OK)
        fail(static_cast<mesatee_status>(status), "the platform refused the seal key request");
}

Bytes evidence(ByteView report_data) {
    const mesatee_sw_platform& s = instance().services;
    if (report_data.size != MESATEE_REPORT_DATA_SIZE) fail(MESATEE_ERROR_INTERNAL, "report data must be 64 bytes");
    Bytes out(MESATEE_MAX_EVIDENCE_SIZE);
    size_t size = 0;
    int status = s.evidence(s.context, report_data.data, out.data(), out.size(), &size);
    if (status != MESATEE_OK || size > out.size())
        fail(status == MESATEE_OK ? MESATEE_ERROR_INTERNAL : static_cast<mesatee_status>(status),
             "the platform could not produce evidence");
    out.resize(size);
    return out;
}

}  // namespace platform
}  // namespace mesatee

using mesatee::Instance;

extern "C" __attribute__((visibility("default"))) int mesatee_sw_enclave_create(const mesatee_sw_platform* platform,
                                                                               void** instance) {
    if (!platform || !instance || platform->abi_version != MESATEE_SW_ABI_VERSION || !platform->seal_key ||
        !platform->evidence)
        return MESATEE_ERROR_BOUNDARY;
    try {  // nothing may escape an extern "C" entry point
        auto created = std::make_unique<Instance>();
        created->services = *platform;
        const mesatee_sw_identity& id = platform->identity;
        created->identity.mrenclave.assign(id.mrenclave, id.mrenclave + 32);
        created->identity.mrsigner.assign(id.mrsigner, id.mrsigner + 32);
        created->identity.product_id = id.product_id;
        created->identity.security_version = id.security_version;
        created->identity.debug = id.debug != 0;
        created->identity.kind = MESATEE_PLATFORM_SOFTWARE;
        *instance = created.release();
        return MESATEE_OK;
    } catch (...) {
        return MESATEE_ERROR_OUT_OF_MEMORY;
    }
}

extern "C" __attribute__((visibility("default"))) int mesatee_sw_enclave_call(void* instance, uint32_t function_id,
                                                                             void* args, size_t args_size) {
    if (!instance) return MESATEE_ERROR_BOUNDARY;
    Instance* previous = mesatee::current;
    mesatee::current = static_cast<Instance*>(instance);
    int status = mesatee_t_dispatch(function_id, args, args_size);
    mesatee::current = previous;
    return status;
}

extern "C" __attribute__((visibility("default"))) void mesatee_sw_enclave_destroy(void* instance) {
    delete static_cast<Instance*>(instance);
}
