// A model's repacked matrices (cpu::PackMatrix) kept as one file, so that later loads map
// them instead of repacking: the derived blob the registry stores next to a model's GGUF blob
// (services/registry/registry.h decides where; this file only writes and reads the bytes).
//
// File layout (little-endian, the host's):
//   [0, 256)              header: magic "LLMPACK\0", format 1, packed-layout version, target
//                         name, source digest, matrix count, payload offset, size and
//                         checksum, and a checksum of the header and the table
//   [256, 256 + 40 n)     table, one entry per matrix of the model (in Model's order):
//                         type, packed (0/1), rows, cols, payload offset, bytes
//   [payload_offset, end) payload (4096-aligned), each packed matrix 64-byte aligned (the F16
//                         kernel's aligned loads hold on the mapping as on an allocation)
// The payload checksum is XXH64 (util/hash64.h) of each packed matrix's 4 MiB chunks, each
// seeded with its position, then of those hashes: computed in parallel, the same for any
// number of threads.
//
// A blob is keyed by what decides its bytes: the source file's digest, the layout version
// (cpu::kPackedLayoutVersion) and the CPU target whose kernels chose which matrices to pack.
// MapPackedBlob checks all three and every matrix's shape against the model being loaded and
// the whole payload's checksum, so a stale, foreign, truncated or corrupted blob is refused
// (and rebuilt by the caller), never used.
//
// Thread safety: free functions; a blob is only ever replaced whole (WriteFileAtomically), so
// concurrent writers and readers of one path see a complete file.
#ifndef LLMASOS_MODEL_ARCH_PACKED_BLOB_H_
#define LLMASOS_MODEL_ARCH_PACKED_BLOB_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "drivers/cpu/ops.h"
#include "util/mapped_file.h"
#include "util/status.h"
#include "util/thread_pool.h"

namespace llmasos::arch {

struct PackedBlobKey {
  std::string source_digest;  // "sha256:<hex>" of the GGUF file the matrices come from
  uint32_t layout_version = cpu::kPackedLayoutVersion;
  std::string target;  // the kernel dispatcher's name for this CPU (cpu::ChosenTarget())
};

// The registry's kind for such a blob: "packed-v<layout>-<target in lower case>".
std::string PackedBlobKind(const PackedBlobKey& key);

// Writes the packed copies of `views` (views[i]->packed, or null for a matrix left in the
// file's layout) to `path` through a temporary file and an atomic rename.
Status WritePackedBlob(const std::string& path, const PackedBlobKey& key,
                       std::span<const cpu::MatView* const> views, ThreadPool& pool);

// Maps the blob at `path` and checks it against `key`, against `views` (the same matrices, in
// the same order) and `packed[i]` (whether matrix i is to be packed), and against its
// checksums. On success (*out)[i] is a PackedMatrix whose bytes are in the returned mapping
// (null where packed[i] is false); the mapping must outlive them. kNotFound when there is no
// blob; kDataLoss naming the first thing that does not match otherwise.
StatusOr<std::unique_ptr<MappedFile>> MapPackedBlob(
    const std::string& path, const PackedBlobKey& key, std::span<const cpu::MatView* const> views,
    const std::vector<bool>& packed, ThreadPool& pool,
    std::vector<std::unique_ptr<cpu::PackedMatrix>>* out);

}  // namespace llmasos::arch

#endif  // LLMASOS_MODEL_ARCH_PACKED_BLOB_H_
