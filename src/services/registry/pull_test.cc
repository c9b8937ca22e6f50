#include "services/registry/pull.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <gtest/gtest.h>

#include "services/registry/address_policy.h"
#include "services/registry/http_fetch.h"
#include "services/registry/test_home.h"
#include "services/registry/validate.h"

namespace llmasos::registry {
namespace {

TEST(AddressPolicyTest, ClassifiesEveryRefusedRangeAndItsEdges) {
  struct Case {
    const char* address;
    AddressClass want;
  };
  const Case cases[] = {
      {"8.8.8.8", AddressClass::kPublic},
      {"127.0.0.1", AddressClass::kLoopback},
      {"127.255.255.254", AddressClass::kLoopback},
      {"128.0.0.1", AddressClass::kPublic},
      {"10.0.0.1", AddressClass::kPrivate},
      {"11.0.0.1", AddressClass::kPublic},
      {"172.16.0.1", AddressClass::kPrivate},
      {"172.31.255.255", AddressClass::kPrivate},
      {"172.32.0.1", AddressClass::kPublic},
      {"172.15.255.255", AddressClass::kPublic},
      {"192.168.1.1", AddressClass::kPrivate},
      {"192.169.0.1", AddressClass::kPublic},
      {"100.64.0.1", AddressClass::kPrivate},
      {"100.128.0.1", AddressClass::kPublic},
      {"169.254.169.254", AddressClass::kLinkLocal},
      {"169.253.0.1", AddressClass::kPublic},
      {"0.0.0.0", AddressClass::kUnspecified},
      {"0.1.2.3", AddressClass::kUnspecified},
      {"224.0.0.1", AddressClass::kMulticast},
      {"255.255.255.255", AddressClass::kMulticast},
      {"2606:4700::1111", AddressClass::kPublic},
      {"::1", AddressClass::kLoopback},
      {"::", AddressClass::kUnspecified},
      {"::2", AddressClass::kPublic},
      {"fc00::1", AddressClass::kPrivate},
      {"fdff:ffff::1", AddressClass::kPrivate},
      {"fe00::1", AddressClass::kPublic},
      {"fe80::1", AddressClass::kLinkLocal},
      {"febf:ffff::1", AddressClass::kLinkLocal},
      {"fec0::1", AddressClass::kPublic},
      {"ff02::1", AddressClass::kMulticast},
      // IPv4-mapped forms are the IPv4 address they carry.
      {"::ffff:127.0.0.1", AddressClass::kLoopback},
      {"::ffff:10.1.2.3", AddressClass::kPrivate},
      {"::ffff:169.254.169.254", AddressClass::kLinkLocal},
      {"::ffff:0.0.0.0", AddressClass::kUnspecified},
      {"::ffff:8.8.8.8", AddressClass::kPublic},
      {"::ffff:7f00:1", AddressClass::kLoopback},
  };
  for (const Case& c : cases) {
    auto got = ClassifyAddressText(c.address);
    ASSERT_TRUE(got.ok()) << c.address;
    EXPECT_EQ(AddressClassName(*got), AddressClassName(c.want)) << c.address;
  }
  EXPECT_FALSE(ClassifyAddressText("localhost").ok());
  EXPECT_FALSE(ClassifyAddressText("127.1").ok());
}

TEST(AddressPolicyTest, ClassifiesSocketAddressesAsCurlHandsThemOver) {
  sockaddr_in6 v6{};
  v6.sin6_family = AF_INET6;
  ASSERT_EQ(::inet_pton(AF_INET6, "::ffff:192.168.0.10", &v6.sin6_addr), 1);
  auto c = ClassifyAddress(reinterpret_cast<sockaddr*>(&v6), sizeof(v6));
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(*c, AddressClass::kPrivate);
  EXPECT_EQ(AddressText(reinterpret_cast<sockaddr*>(&v6), sizeof(v6)), "::ffff:192.168.0.10");
  sockaddr_in v4{};
  v4.sin_family = AF_INET;
  v4.sin_addr.s_addr = htonl(0x7f000001);
  c = ClassifyAddress(reinterpret_cast<sockaddr*>(&v4), sizeof(v4));
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(*c, AddressClass::kLoopback);
  // A length too short for the family is refused, not read past.
  EXPECT_FALSE(ClassifyAddress(reinterpret_cast<sockaddr*>(&v6), sizeof(sockaddr_in)).ok());
  sockaddr unix_addr{};
  unix_addr.sa_family = AF_UNIX;
  EXPECT_FALSE(ClassifyAddress(&unix_addr, sizeof(unix_addr)).ok());
}

TEST(HttpFetchTest, ParsesContentRangeAndRefusesMalformedOnes) {
  auto cr = ParseContentRange("bytes 100-199/1000");
  ASSERT_TRUE(cr.ok());
  EXPECT_EQ(*cr->first, 100u);
  EXPECT_EQ(*cr->last, 199u);
  EXPECT_EQ(*cr->total, 1000u);
  cr = ParseContentRange("bytes 5-9/*");
  ASSERT_TRUE(cr.ok());
  EXPECT_FALSE(cr->total.has_value());
  cr = ParseContentRange("bytes */1000");
  ASSERT_TRUE(cr.ok());
  EXPECT_FALSE(cr->first.has_value());
  EXPECT_EQ(*cr->total, 1000u);
  for (const char* bad : {"", "bytes", "bytes 1-2", "items 1-2/3", "bytes 9-5/10", "bytes 0-10/10",
                          "bytes -1-5/10", "bytes */*", "bytes a-b/c", "bytes 1-99999999999999999999999/5"}) {
    EXPECT_FALSE(ParseContentRange(bad).ok()) << bad;
  }
}

TEST(HttpFetchTest, AcceptsOnlyAbsoluteHttpUrls) {
  auto u = ParseHttpUrl("https://example.com/models/SmolLM2%20Q4.gguf?download=1");
  ASSERT_TRUE(u.ok()) << u.status().ToString();
  EXPECT_EQ(u->scheme, "https");
  EXPECT_EQ(u->host, "example.com");
  EXPECT_EQ(u->file_name, "SmolLM2 Q4.gguf");
  for (const char* bad : {"ftp://example.com/a.gguf", "file:///etc/passwd", "example.com/a.gguf",
                          "https://", "http://exa mple.com/a", "", "gopher://x/y"}) {
    auto r = ParseHttpUrl(bad);
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << bad;
  }
}

TEST(PullTest, DerivesAValidNameFromTheUrlsFileName) {
  EXPECT_EQ(*NameFromUrl("https://h/x/SmolLM2-135M-Instruct.Q4_1.gguf"), "smollm2-135m-instruct.q4_1");
  EXPECT_EQ(*NameFromUrl("http://h/__My%20Model!.GGUF"), "my-model-");
  EXPECT_EQ(NameFromUrl("http://h/dir/").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(NameFromUrl("http://h/.gguf").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(NameFromUrl("http://h/..").status().code(), StatusCode::kInvalidArgument);
  auto longer = NameFromUrl("http://h/" + std::string(300, 'a') + ".gguf");
  ASSERT_TRUE(longer.ok());
  EXPECT_EQ(longer->size(), kMaxNameBytes);
}

TEST(PullTest, ParsesSizesWithBinarySuffixes) {
  EXPECT_EQ(*ParseByteSize("4096"), 4096u);
  EXPECT_EQ(*ParseByteSize("12K"), 12u << 10);
  EXPECT_EQ(*ParseByteSize("3m"), uint64_t{3} << 20);
  EXPECT_EQ(*ParseByteSize("8GiB"), uint64_t{8} << 30);
  EXPECT_EQ(*ParseByteSize("1TB"), uint64_t{1} << 40);
  for (const char* bad : {"", "0", "-1", "1.5G", "G", "12X", "99999999999999999999", "20000000T"}) {
    EXPECT_FALSE(ParseByteSize(bad).ok()) << bad;
  }
}

class PullRegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto r = Registry::Open(home_.path() + "/home");
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    registry_ = std::move(r).value();
  }
  TempHome home_;
  std::unique_ptr<Registry> registry_;
};

TEST_F(PullRegistryTest, RefusesBadRequestsBeforeTouchingTheNetwork) {
  Registry* r = registry_.get();
  PullRequest req;
  req.url = "ftp://example.com/a.gguf";
  EXPECT_EQ(Pull(*r, req).status().code(), StatusCode::kInvalidArgument);
  req.url = "http://example.com/a.gguf";
  req.name = "Bad Name";
  EXPECT_EQ(Pull(*r, req).status().code(), StatusCode::kInvalidArgument);
  req.name = "ok";
  req.expected_digest = "sha256:1234";
  EXPECT_EQ(Pull(*r, req).status().code(), StatusCode::kInvalidArgument);
  req.expected_digest.reset();
  req.version = "one";
  EXPECT_EQ(Pull(*r, req).status().code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(std::filesystem::exists(home_.path() + "/home/downloads"));
}

TEST_F(PullRegistryTest, RefusesLoopbackAndMappedLinkLocalAddresses) {
  Registry* r = registry_.get();
  PullRequest req;
  // Port 9 (discard) on loopback: refused by the policy before any connection is tried.
  req.url = "http://127.0.0.1:9/a.gguf";
  req.max_attempts = 1;
  auto s = Pull(*r, req);
  EXPECT_EQ(s.status().code(), StatusCode::kFailedPrecondition) << s.status().ToString();
  EXPECT_NE(s.status().message().find("127.0.0.1 (loopback)"), std::string::npos) << s.status().message();
  req.url = "http://[::ffff:169.254.169.254]:9/a.gguf";
  s = Pull(*r, req);
  EXPECT_EQ(s.status().code(), StatusCode::kFailedPrecondition) << s.status().ToString();
  EXPECT_NE(s.status().message().find("link-local"), std::string::npos) << s.status().message();
  // Nothing was downloaded, so nothing is kept for a resume.
  EXPECT_TRUE(DirEntries(home_.path() + "/home/downloads").empty());
}

}  // namespace
}  // namespace llmasos::registry
