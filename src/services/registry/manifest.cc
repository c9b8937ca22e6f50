#include "services/registry/manifest.h"

#include <ctime>
#include <map>

#include <nlohmann/json.hpp>

#include "model/gguf/gguf.h"
#include "services/registry/validate.h"

namespace llmasos::registry {
namespace {

using Json = nlohmann::json;

// (field, value as text) pairs in manifest order; the one list ToJson, FromJson and Diff share.
std::vector<std::pair<std::string, std::string>> Fields(const Manifest& m) {
  return {
      {"name", m.name},
      {"version", m.version},
      {"digest", m.digest},
      {"size_bytes", std::to_string(m.size_bytes)},
      {"format", m.format},
      {"architecture", m.architecture},
      {"quantization", m.quantization},
      {"parameter_count", std::to_string(m.parameter_count)},
      {"context_length", std::to_string(m.context_length)},
      {"chat_template", m.chat_template},
      {"license", m.license},
      {"lineage.parent_version", m.lineage.parent_version},
      {"lineage.source", m.lineage.source},
      {"lineage.created", m.lineage.created},
      {"lineage.command", m.lineage.command},
      {"lineage.notes", m.lineage.notes},
      {"lineage.training.base", m.lineage.training.base},
      {"lineage.training.base_digest", m.lineage.training.base_digest},
      {"lineage.training.data_digest", m.lineage.training.data_digest},
      {"lineage.training.data", m.lineage.training.data},
      {"lineage.training.parameters", m.lineage.training.parameters},
  };
}

template <typename T>
Status Get(const Json& j, const char* key, T* out) {
  auto it = j.find(key);
  if (it == j.end()) return DataLossError(std::string("manifest has no '") + key + "'");
  try {
    *out = it->template get<T>();
  } catch (const Json::exception&) {
    return DataLossError(std::string("manifest field '") + key + "' has the wrong type");
  }
  return OkStatus();
}

}  // namespace

Json ManifestToJson(const Manifest& m) {
  Json j{
      {"name", m.name},
      {"version", m.version},
      {"digest", m.digest},
      {"size_bytes", m.size_bytes},
      {"format", m.format},
      {"architecture", m.architecture},
      {"quantization", m.quantization},
      {"parameter_count", m.parameter_count},
      {"context_length", m.context_length},
      {"chat_template", m.chat_template},
      {"license", m.license},
      {"lineage",
       {{"parent_version", m.lineage.parent_version},
        {"source", m.lineage.source},
        {"created", m.lineage.created},
        {"command", m.lineage.command},
        {"notes", m.lineage.notes}}},
  };
  const TrainingLineage& t = m.lineage.training;
  if (!t.base.empty()) {
    // parameters is stored as the object it is, so `show --json` readers need not re-parse.
    Json params = Json::parse(t.parameters, nullptr, /*allow_exceptions=*/false);
    j["lineage"]["training"] = {{"base", t.base},
                                {"base_digest", t.base_digest},
                                {"data_digest", t.data_digest},
                                {"data", t.data},
                                {"parameters", params.is_discarded() ? Json(t.parameters) : params}};
  }
  return j;
}

StatusOr<Manifest> ManifestFromJson(const Json& j) {
  if (!j.is_object()) return DataLossError("manifest is not a JSON object");
  Manifest m;
  RETURN_IF_ERROR(Get(j, "name", &m.name));
  RETURN_IF_ERROR(Get(j, "version", &m.version));
  RETURN_IF_ERROR(Get(j, "digest", &m.digest));
  RETURN_IF_ERROR(Get(j, "size_bytes", &m.size_bytes));
  RETURN_IF_ERROR(Get(j, "format", &m.format));
  RETURN_IF_ERROR(Get(j, "architecture", &m.architecture));
  RETURN_IF_ERROR(Get(j, "quantization", &m.quantization));
  RETURN_IF_ERROR(Get(j, "parameter_count", &m.parameter_count));
  RETURN_IF_ERROR(Get(j, "context_length", &m.context_length));
  RETURN_IF_ERROR(Get(j, "chat_template", &m.chat_template));
  RETURN_IF_ERROR(Get(j, "license", &m.license));
  auto lin = j.find("lineage");
  if (lin == j.end() || !lin->is_object()) return DataLossError("manifest has no 'lineage' object");
  RETURN_IF_ERROR(Get(*lin, "parent_version", &m.lineage.parent_version));
  RETURN_IF_ERROR(Get(*lin, "source", &m.lineage.source));
  RETURN_IF_ERROR(Get(*lin, "created", &m.lineage.created));
  RETURN_IF_ERROR(Get(*lin, "command", &m.lineage.command));
  RETURN_IF_ERROR(Get(*lin, "notes", &m.lineage.notes));
  if (auto tr = lin->find("training"); tr != lin->end()) {  // only fine-tuned versions have it
    if (!tr->is_object()) return DataLossError("manifest field 'lineage.training' is not an object");
    TrainingLineage& t = m.lineage.training;
    RETURN_IF_ERROR(Get(*tr, "base", &t.base));
    RETURN_IF_ERROR(Get(*tr, "base_digest", &t.base_digest));
    RETURN_IF_ERROR(Get(*tr, "data_digest", &t.data_digest));
    RETURN_IF_ERROR(Get(*tr, "data", &t.data));
    auto params = tr->find("parameters");
    if (params == tr->end()) return DataLossError("manifest has no 'parameters'");
    t.parameters = params->is_string() ? params->get<std::string>() : params->dump();
  }
  // Stored state is validated like input: a damaged or forged row must not build a path.
  if (Status s = ValidateName(m.name); !s.ok()) {
    return DataLossError("stored manifest has an invalid name: " + s.message());
  }
  if (Status s = ValidateDigest(m.digest); !s.ok()) {
    return DataLossError("stored manifest of " + m.name + " has an invalid digest: " + s.message());
  }
  return m;
}

std::string FileTypeName(uint64_t file_type) {
  // llama.cpp's LLAMA_FTYPE_MOSTLY_* numbering, as stored in general.file_type.
  static const std::map<uint64_t, std::string> kNames = {
      {0, "F32"},     {1, "F16"},     {2, "Q4_0"},    {3, "Q4_1"},    {7, "Q8_0"},
      {8, "Q5_0"},    {9, "Q5_1"},    {10, "Q2_K"},   {11, "Q3_K_S"}, {12, "Q3_K_M"},
      {13, "Q3_K_L"}, {14, "Q4_K_S"}, {15, "Q4_K_M"}, {16, "Q5_K_S"}, {17, "Q5_K_M"},
      {18, "Q6_K"},   {19, "IQ2_XXS"}, {20, "IQ2_XS"}, {21, "Q2_K_S"}, {22, "IQ3_XS"},
      {23, "IQ3_XXS"}, {24, "IQ1_S"}, {25, "IQ4_NL"}, {26, "IQ3_S"},  {27, "IQ3_M"},
      {28, "IQ2_S"},  {29, "IQ2_M"},  {30, "IQ4_XS"}, {31, "IQ1_M"},  {32, "BF16"},
      {36, "TQ1_0"},  {37, "TQ2_0"},
  };
  auto it = kNames.find(file_type);
  return it == kNames.end() ? "" : it->second;
}

Status ReadGgufFacts(const std::string& path, Manifest* m) {
  ASSIGN_OR_RETURN(auto file, gguf::GgufFile::Open(path));
  auto arch = file->GetString("general.architecture");
  if (!arch.ok()) {
    return arch.status().Annotate("'" + path + "' is not a model this registry can describe");
  }
  m->architecture = std::string(*arch);
  m->quantization.clear();
  if (auto ft = file->GetUint("general.file_type"); ft.ok()) m->quantization = FileTypeName(*ft);
  // Without a (known) file type: the type holding the most weight bytes among 2-D tensors.
  std::map<std::string_view, uint64_t> bytes_by_type;
  m->parameter_count = 0;
  for (const gguf::TensorInfo& t : file->tensors()) {
    m->parameter_count += t.num_elements;
    if (t.dims.size() >= 2) bytes_by_type[cpu::Traits(t.type).name] += t.num_bytes;
  }
  if (m->quantization.empty()) {
    uint64_t best = 0;
    for (const auto& [name, bytes] : bytes_by_type) {
      if (bytes > best) {
        best = bytes;
        m->quantization = std::string(name);
      }
    }
  }
  if (auto ctx = file->GetUint(m->architecture + ".context_length"); ctx.ok()) {
    m->context_length = *ctx;
  }
  if (auto t = file->GetString("tokenizer.chat_template"); t.ok()) m->chat_template = std::string(*t);
  if (auto l = file->GetString("general.license"); l.ok()) m->license = std::string(*l);
  return OkStatus();
}

std::vector<FieldDiff> DiffManifests(const Manifest& a, const Manifest& b) {
  auto fa = Fields(a), fb = Fields(b);
  std::vector<FieldDiff> out;
  for (size_t i = 0; i < fa.size(); ++i) {
    if (fa[i].second != fb[i].second) out.push_back({fa[i].first, fa[i].second, fb[i].second});
  }
  return out;
}

std::string NowUtc() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace llmasos::registry
