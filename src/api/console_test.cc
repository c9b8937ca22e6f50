// The console's files are embedded and served: / is the page, every asset it names is a
// route with its content type, and nothing it loads comes from another origin.
#include "api/console.h"

#include <gtest/gtest.h>

#include <memory>
#include <regex>
#include <string>

#include "api/recording_exchange.h"

namespace llmasos::api {
namespace {

const ConsoleFile* Find(std::string_view name) {
  for (const ConsoleFile& f : ConsoleFiles()) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

// What the router answers to GET `path` (404 / 405 through SendMiss when no route takes it).
std::shared_ptr<RecordingExchange> Get(const Router& router, const std::string& path) {
  auto ex = std::make_shared<RecordingExchange>("GET", path);
  Router::Route route = router.Match(ex->request_);
  if (route.handler == nullptr) {
    Router::SendMiss(*ex, route);
  } else {
    (*route.handler)(ex);
  }
  return ex;
}

TEST(ConsoleTest, EmbedsThePageItsStylesAndItsScriptByteForByte) {
  const ConsoleFile* page = Find("index.html");
  ASSERT_NE(page, nullptr);
  EXPECT_EQ(page->content_type, "text/html; charset=utf-8");
  EXPECT_TRUE(page->body.starts_with("<!doctype html>"));
  EXPECT_TRUE(page->body.ends_with("</html>\n"));
  ASSERT_NE(Find("console.js"), nullptr);
  EXPECT_EQ(Find("console.js")->content_type, "text/javascript; charset=utf-8");
  EXPECT_NE(Find("console.js")->body.find("/v1/chat/completions"), std::string_view::npos);
  ASSERT_NE(Find("console.css"), nullptr);
  EXPECT_EQ(Find("console.css")->content_type, "text/css; charset=utf-8");
}

TEST(ConsoleTest, ServesThePageAtRootAndEveryAssetItLinks) {
  Router router;
  AddConsoleRoutes(router);
  auto root = Get(router, "/");
  EXPECT_EQ(root->status_, 200);
  EXPECT_EQ(root->content_type_, "text/html; charset=utf-8");
  EXPECT_EQ(root->body_, Find("index.html")->body);

  // Every src= and href= of the page is a path on this origin that the router serves.
  std::regex link(R"re((?:src|href)="([^"]*)")re");
  int num_links = 0;
  for (std::sregex_iterator it(root->body_.begin(), root->body_.end(), link), end; it != end; ++it) {
    std::string target = (*it)[1];
    ASSERT_TRUE(target.starts_with("/console/")) << target << " is not one of the embedded files";
    auto asset = Get(router, target);
    EXPECT_EQ(asset->status_, 200) << target;
    EXPECT_EQ(asset->body_, Find(target.substr(9))->body) << target;
    ++num_links;
  }
  EXPECT_EQ(num_links, 2);
}

TEST(ConsoleTest, UnknownAssetIsNotFound) {
  Router router;
  AddConsoleRoutes(router);
  EXPECT_EQ(Get(router, "/console/missing.js")->status_, 404);
  EXPECT_EQ(Get(router, "/console/")->status_, 404);
}

}  // namespace
}  // namespace llmasos::api
