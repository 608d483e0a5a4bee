// Enclave-side memory for buffers crossing the boundary (used by the generated
// bridge, mesatee_t.c). A few blocks are kept per thread and reused: a fresh
// multi-megabyte allocation per ecall costs more in page faults than sealing
// the data does.
#include <cstdlib>
#include <cstring>
#include <utility>

#include "mesatee_t.h"

namespace {

constexpr size_t kMaxKeptBlock = size_t(64) << 20;
constexpr int kMaxKeptBlocks = 4;

struct alignas(16) BlockHeader {
    size_t capacity;
};

struct BlockCache {
    BlockHeader* blocks[kMaxKeptBlocks] = {};
    ~BlockCache() {
        for (BlockHeader* b : blocks) std::free(b);
    }
};

thread_local BlockCache cache;

}  // namespace

extern "C" void* mesatee_t_alloc(size_t size, int zero) {
    if (size == 0) return nullptr;
    BlockHeader* block = nullptr;
    for (BlockHeader*& kept : cache.blocks) {
        if (kept && kept->capacity >= size && (!block || kept->capacity < block->capacity)) block = kept;
    }
    if (block) {
        for (BlockHeader*& kept : cache.blocks)
            if (kept == block) kept = nullptr;
    } else {
        if (size > SIZE_MAX - sizeof(BlockHeader)) return nullptr;
        block = static_cast<BlockHeader*>(std::malloc(sizeof(BlockHeader) + size));
        if (!block) return nullptr;
        block->capacity = size;
    }
    void* data = block + 1;
    if (zero) std::memset(data, 0, size);
    return data;
}

extern "C" void mesatee_t_free(void* data) {
    if (!data) return;
    BlockHeader* block = static_cast<BlockHeader*>(data) - 1;
    if (block->capacity <= kMaxKeptBlock) {
        // Keep it in place of an empty slot or of the smallest kept block.
        BlockHeader** slot = nullptr;
        for (BlockHeader*& kept : cache.blocks) {
            if (!kept) {
                slot = &kept;
                break;
            }
            if (kept->capacity < block->capacity && (!slot || kept->capacity < (*slot)->capacity)) slot = &kept;
        }
        if (slot) {
            std::swap(*slot, block);
        }
    }
    std::free(block);
}
