// The model service over a registry and a manager with a fake loader: the load state in
// listings, delete of loaded and busy versions, hot swap after tag, rollback and copy, and the
// pull placeholder.
#include "services/manager/model_service.h"

#include <gtest/gtest.h>

#include "services/manager/fake_loader_test_util.h"

namespace llmasos::manager {
namespace {

using std::chrono::minutes;
using std::chrono::seconds;

class ModelServiceTest : public testing::Test {
 protected:
  void SetUp() override {
    reg_.Add("m", "1.0.0", 1);
    reg_.Add("m", "1.1.0", 2);
    reg_.Add("other", "2.0.0", 3);
    ManagerOptions o;
    o.default_keep_alive = minutes(5);
    manager_ = NewFakeManager(reg_, clock_, o);
    service_ = std::make_unique<ModelService>(reg_.get(), manager_.get());
  }

  std::vector<std::string> LoadedLabels() {
    std::vector<std::string> out;
    for (const InstanceInfo& i : service_->Loaded()) out.push_back(i.manifest.name + "@" + i.manifest.version);
    return out;
  }

  TestRegistry reg_;
  ManualClock clock_;
  std::unique_ptr<ModelManager> manager_;
  std::unique_ptr<ModelService> service_;
};

using Labels = std::vector<std::string>;

TEST_F(ModelServiceTest, ListShowsWhatIsLoadedPinnedAndWhenItExpires) {
  ASSERT_TRUE(service_->Load({.model = "m@1.0.0", .keep_alive = minutes(2)}).ok());
  ASSERT_TRUE(service_->Pin("other").ok());
  clock_.Advance(seconds(30));
  auto list = service_->List();
  ASSERT_TRUE(list.ok()) << list.status().ToString();
  ASSERT_EQ(list->size(), 3u);
  const ModelStatus& m11 = (*list)[0];
  const ModelStatus& m10 = (*list)[1];
  const ModelStatus& other = (*list)[2];
  EXPECT_EQ(m11.manifest.version, "1.1.0");
  EXPECT_EQ(m11.tags, (Labels{"latest"}));
  EXPECT_FALSE(m11.loaded);
  EXPECT_EQ(m10.manifest.version, "1.0.0");
  EXPECT_TRUE(m10.loaded);
  EXPECT_FALSE(m10.pinned);
  EXPECT_EQ(m10.resident_bytes, 100u);
  ASSERT_TRUE(m10.expires_in.has_value());
  EXPECT_EQ(*m10.expires_in, seconds(90));
  EXPECT_TRUE(other.loaded && other.pinned);
  EXPECT_FALSE(other.expires_in.has_value());

  auto versions = service_->Versions("m");
  ASSERT_TRUE(versions.ok());
  EXPECT_EQ(versions->size(), 2u);
  EXPECT_EQ(service_->Versions("none").status().code(), StatusCode::kNotFound);
  auto show = service_->Show("m@1.0.0");
  ASSERT_TRUE(show.ok());
  EXPECT_TRUE(show->loaded);
  EXPECT_EQ(show->manifest.digest, m10.manifest.digest);
}

TEST_F(ModelServiceTest, DeleteUnloadsAnIdleVersionAndRefusesABusyOneUnlessForced) {
  ASSERT_TRUE(service_->Load({.model = "m@1.0.0"}).ok());
  auto deleted = service_->Delete({.model = "m@1.0.0"});
  ASSERT_TRUE(deleted.ok()) << deleted.status().ToString();
  EXPECT_TRUE(deleted->was_loaded && deleted->unloaded_now);
  EXPECT_TRUE(service_->Loaded().empty());
  EXPECT_EQ(service_->Show("m@1.0.0").status().code(), StatusCode::kNotFound);

  auto lease = manager_->Acquire("m");
  ASSERT_TRUE(lease.ok());
  auto refused = service_->Delete({.model = "m"});
  ASSERT_EQ(refused.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(refused.status().message().find("serving 1 request"), std::string::npos) << refused.status().message();
  EXPECT_TRUE(service_->Show("m@1.1.0").ok());

  deleted = service_->Delete({.model = "m", .force = true});
  ASSERT_TRUE(deleted.ok()) << deleted.status().ToString();
  EXPECT_FALSE(deleted->unloaded_now);
  EXPECT_EQ(deleted->blobs_removed.size(), 1u);
  EXPECT_EQ(LoadedLabels(), (Labels{"m@1.1.0"}));  // still serving its request
  EXPECT_EQ(lease->manifest().version, "1.1.0");
  lease->Release();
  EXPECT_TRUE(service_->Loaded().empty());
}

TEST_F(ModelServiceTest, RollbackAndTagHotSwap) {
  ASSERT_TRUE(service_->Load({.model = "m"}).ok());
  EXPECT_EQ(LoadedLabels(), (Labels{"m@1.1.0"}));
  auto rolled = service_->Rollback({.name = "m"});
  ASSERT_TRUE(rolled.ok()) << rolled.status().ToString();
  EXPECT_EQ(rolled->version, "1.0.0");
  EXPECT_TRUE(service_->Loaded().empty());  // idle and superseded: gone at once
  ASSERT_TRUE(service_->Load({.model = "m"}).ok());
  EXPECT_EQ(LoadedLabels(), (Labels{"m@1.0.0"}));

  auto lease = manager_->Acquire("m");
  ASSERT_TRUE(lease.ok());
  ASSERT_TRUE(service_->Tag({.model = "m@1.1.0", .tag = "latest"}).ok());
  EXPECT_EQ(LoadedLabels(), (Labels{"m@1.0.0"}));  // busy: finishes its request
  EXPECT_TRUE(service_->Loaded()[0].superseded);
  lease->Release();
  EXPECT_TRUE(service_->Loaded().empty());
  auto now = manager_->Acquire("m");
  ASSERT_TRUE(now.ok());
  EXPECT_EQ(now->manifest().version, "1.1.0");
}

TEST_F(ModelServiceTest, CopyOntoALoadedNameSwapsIt) {
  ASSERT_TRUE(service_->Load({.model = "other"}).ok());
  auto copied = service_->Copy({.source = "m@1.0.0", .destination = "other@3.0.0"});
  ASSERT_TRUE(copied.ok()) << copied.status().ToString();
  EXPECT_EQ(copied->name, "other");
  EXPECT_TRUE(service_->Loaded().empty());  // other:latest is 3.0.0 now
  auto shown = service_->Show("other");
  ASSERT_TRUE(shown.ok());
  EXPECT_EQ(shown->manifest.version, "3.0.0");
  EXPECT_EQ(service_->Copy({.source = "m", .destination = "x@>=1"}).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(ModelServiceTest, RefusedDeleteKeepsThePin) {
  ASSERT_TRUE(service_->Pin("m").ok());
  auto lease = manager_->Acquire("m");
  ASSERT_TRUE(lease.ok());
  EXPECT_EQ(service_->Delete({.model = "m"}).status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(manager_->Pins(), (Labels{"m:latest"}));
  lease->Release();
  auto deleted = service_->Delete({.model = "m"});
  ASSERT_TRUE(deleted.ok()) << deleted.status().ToString();
  EXPECT_TRUE(manager_->Pins().empty());
  EXPECT_TRUE(service_->Loaded().empty());
}

TEST_F(ModelServiceTest, UnloadAndUnpinThroughTheService) {
  ASSERT_TRUE(service_->Pin("m").ok());
  EXPECT_EQ(service_->Unload({.model = "m"}).status().code(), StatusCode::kFailedPrecondition);
  ASSERT_TRUE(service_->Unpin("m").ok());
  auto r = service_->Unload({.model = "m"});
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->unloaded_now);
  EXPECT_TRUE(service_->Loaded().empty());
}

// The download itself is tested against a local server in tests/e2e/test_pull.py; here, that
// the service maps its request onto registry::Pull and refuses what it must before any byte.
TEST_F(ModelServiceTest, PullValidatesTheRequestAndRefusesLoopbackWithoutTheFlag) {
  int events = 0;
  auto count = [&](const PullProgress&) { events++; };
  EXPECT_EQ(service_->Pull({.model = "Bad Name", .url = "https://example.invalid/x.gguf"}, count)
                .status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(service_->Pull({.model = "new@^1.0", .url = "https://example.invalid/x.gguf"}, count)
                .status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(service_->Pull({.model = "new", .url = "ftp://example.invalid/x.gguf"}, count)
                .status().code(), StatusCode::kInvalidArgument);
  auto local = service_->Pull({.model = "new:stable", .url = "http://127.0.0.1:9/x.gguf"}, count);
  EXPECT_EQ(local.status().code(), StatusCode::kFailedPrecondition) << local.status().ToString();
  EXPECT_EQ(service_->List("new").status().code(), StatusCode::kNotFound);  // nothing recorded
}

}  // namespace
}  // namespace llmasos::manager
