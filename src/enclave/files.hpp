// Encrypted files (docs/formats.md, "Encrypted files"): mesatee's chunked
// MTEF format, and Teaclave's single-shot AES-GCM files for compatibility.
// Whole files in enclave memory for now; a streaming reader over host storage
// (an ocall per chunk) plugs in behind decrypt_file's loop.
#pragma once

#include "common/openssl.hpp"

namespace mesatee::files {

constexpr size_t kHeaderSize = 16;
constexpr unsigned kDefaultChunkLog2 = 16;

// A complete MTEF file of plaintext under key (32 bytes).
Bytes encrypt_file(ByteView key, ByteView plaintext, unsigned chunk_log2 = kDefaultChunkLog2);
// The plaintext of an MTEF file; FORMAT or CRYPTO errors name `what` and the chunk.
Bytes decrypt_file(ByteView key, ByteView file, const std::string& what);
// Teaclave's aes-gcm-128/256 file: ciphertext ‖ tag, AAD = 8 zero bytes.
Bytes decrypt_teaclave(ByteView key, ByteView iv, ByteView file, const std::string& what);

}  // namespace mesatee::files
