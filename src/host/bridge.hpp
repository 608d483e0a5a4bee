// A loaded enclave as the generated host bridge (mesatee_u.c) sees it: one
// call per ecall. Each platform backend implements it.
#pragma once

#include <cstddef>
#include <cstdint>

#include "mesatee_u.h"

struct mesatee_bridge {
    virtual ~mesatee_bridge() = default;
    virtual int call(uint32_t function_id, void* args, size_t args_size) = 0;
};
