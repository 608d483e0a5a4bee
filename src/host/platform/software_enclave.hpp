// The software platform's enclave loader: verifies an image against its
// signature file, maps it, and runs ecalls on an instance of it.
#pragma once

#include <memory>
#include <string>

#include "bridge.hpp"
#include "platform/software_platform.hpp"

namespace mesatee::host {

class SoftwareEnclave final : public mesatee_bridge {
public:
    static std::unique_ptr<SoftwareEnclave> load(const std::string& image_path, const std::string& signature_path,
                                                 std::shared_ptr<SoftwarePlatform> platform);
    ~SoftwareEnclave() override;
    int call(uint32_t function_id, void* args, size_t args_size) override;
    const mesatee_sw_identity& identity() const { return services_.identity; }

private:
    SoftwareEnclave() = default;
    static int seal_key_service(void* context, uint32_t policy, const uint8_t key_id[32], uint16_t version,
                                uint8_t key[32]);
    static int evidence_service(void* context, const uint8_t report_data[64], uint8_t* out, size_t capacity,
                                size_t* out_size);

    std::shared_ptr<SoftwarePlatform> platform_;
    mesatee_sw_platform services_{};
    void* handle_ = nullptr;
    void* instance_ = nullptr;
    mesatee_sw_call_fn call_ = nullptr;
    mesatee_sw_destroy_fn destroy_ = nullptr;
};

}  // namespace mesatee::host
