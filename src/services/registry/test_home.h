// A fresh temporary directory for a test, removed afterwards.
#ifndef LLMASOS_SERVICES_REGISTRY_TEST_HOME_H_
#define LLMASOS_SERVICES_REGISTRY_TEST_HOME_H_

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace llmasos::registry {

class TempHome {
 public:
  TempHome() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "llmasos-registry-XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempHome() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

inline void WriteBytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

inline std::vector<std::string> DirEntries(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) out.push_back(e.path().filename());
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace llmasos::registry

#endif  // LLMASOS_SERVICES_REGISTRY_TEST_HOME_H_
