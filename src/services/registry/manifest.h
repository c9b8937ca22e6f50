// A model version's manifest: what the blob is and where it came from. Manifests are
// immutable once stored; tags (which move) live beside them, not in them.
//
// Thread safety: values.
#ifndef LLMASOS_SERVICES_REGISTRY_MANIFEST_H_
#define LLMASOS_SERVICES_REGISTRY_MANIFEST_H_

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "util/status.h"

namespace llmasos::registry {

// What a fine-tuned version (llmasos finetune) was made from; all empty for other versions.
struct TrainingLineage {
  std::string base;         // the base model: "name@version", or the file's absolute path
  std::string base_digest;  // "sha256:<hex>" of the base model's file
  std::string data_digest;  // "sha256:<hex>" of the training data file
  std::string data;         // the data file's absolute path
  std::string parameters;   // a JSON object: every hyper-parameter and the final losses
};

struct Lineage {
  std::string parent_version;  // the version `latest` pointed to when this one was made; "" if none
  std::string source;          // absolute file path, URL, or "name@version" for a copy
  std::string created;         // UTC, ISO 8601: "2026-11-23T14:05:09Z"
  std::string command;         // "import", "cp", "pull"
  std::string notes;           // release notes given by the user
  TrainingLineage training;    // set by "finetune"
};

struct Manifest {
  std::string name;
  std::string version;  // canonical SemVer text
  std::string digest;   // "sha256:<hex>"
  uint64_t size_bytes = 0;
  std::string format = "gguf";
  // From the file's metadata:
  std::string architecture;     // general.architecture
  std::string quantization;     // general.file_type, or the dominant weight type
  uint64_t parameter_count = 0;  // elements in all tensors
  uint64_t context_length = 0;   // <arch>.context_length; 0 if absent
  std::string chat_template;     // tokenizer.chat_template; "" if absent
  std::string license;           // general.license; "" if absent
  Lineage lineage;
};

nlohmann::json ManifestToJson(const Manifest& m);
// kDataLoss naming the field when a stored manifest is malformed.
StatusOr<Manifest> ManifestFromJson(const nlohmann::json& j);

// The model facts (architecture, quantization, parameter count, context length, chat
// template, licence) read from a GGUF file; errors are the reader's, naming the path.
Status ReadGgufFacts(const std::string& path, Manifest* manifest);

// The name llama.cpp prints for a general.file_type value ("Q4_1", "F16"), or "" if unknown.
std::string FileTypeName(uint64_t file_type);

struct FieldDiff {
  std::string field;  // "digest", "lineage.notes", ...
  std::string a;
  std::string b;
};
// Every manifest field whose value differs, in manifest order.
std::vector<FieldDiff> DiffManifests(const Manifest& a, const Manifest& b);

// The current time as "YYYY-MM-DDTHH:MM:SSZ".
std::string NowUtc();

}  // namespace llmasos::registry

#endif  // LLMASOS_SERVICES_REGISTRY_MANIFEST_H_
