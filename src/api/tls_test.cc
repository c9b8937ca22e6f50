// api/tls.h's server context and the HTTP server over TLS, with a certificate made here.
#include "api/tls.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <gtest/gtest.h>

#include "api/http_server.h"
#include "util/file.h"

namespace llmasos::api {
namespace {

namespace net = boost::asio;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;

struct Pem {
  std::string cert;
  std::string key;
};

std::string BioText(BIO* bio) {
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(n));
}

// A P-256 key and a self-signed certificate for 127.0.0.1, valid for a day.
Pem MakeSelfSigned() {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  X509* x = X509_new();
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
  X509_gmtime_adj(X509_getm_notBefore(x), 0);
  X509_gmtime_adj(X509_getm_notAfter(x), 86400);
  X509_set_pubkey(x, key);
  X509_NAME* name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("127.0.0.1"), -1, -1, 0);
  X509_set_issuer_name(x, name);
  X509_sign(x, key, EVP_sha256());
  BIO* cert_bio = BIO_new(BIO_s_mem());
  BIO* key_bio = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(cert_bio, x);
  PEM_write_bio_PrivateKey(key_bio, key, nullptr, nullptr, 0, nullptr, nullptr);
  Pem out{BioText(cert_bio), BioText(key_bio)};
  BIO_free(cert_bio);
  BIO_free(key_bio);
  X509_free(x);
  EVP_PKEY_free(key);
  return out;
}

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("llmasos_tls_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
    pem_ = MakeSelfSigned();
    cert_ = Write("server.crt", pem_.cert);
    key_ = Write("server.key", pem_.key);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string Write(const std::string& name, const std::string& text) {
    const std::string path = (dir_ / name).string();
    EXPECT_TRUE(WriteFileAtomically(path, text).ok());
    return path;
  }

  std::filesystem::path dir_;
  Pem pem_;
  std::string cert_, key_;
};

TEST_F(TlsTest, AMatchingCertificateAndKeyMakeAContext) {
  auto ctx = NewTlsServerContext(cert_, key_);
  ASSERT_TRUE(ctx.ok()) << ctx.status().ToString();
  EXPECT_NE(*ctx, nullptr);
}

TEST_F(TlsTest, EachBadFileIsAnErrorNamingIt) {
  const std::string missing = (dir_ / "absent.pem").string();
  auto no_cert = NewTlsServerContext(missing, key_);
  ASSERT_FALSE(no_cert.ok());
  EXPECT_NE(no_cert.status().message().find(missing), std::string::npos);
  EXPECT_NE(no_cert.status().message().find("--tls-cert"), std::string::npos);

  const std::string garbage = Write("garbage.pem", "not PEM at all\n");
  auto bad_cert = NewTlsServerContext(garbage, key_);
  ASSERT_FALSE(bad_cert.ok());
  EXPECT_EQ(bad_cert.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad_cert.status().message().find("'" + garbage + "' (--tls-cert)"), std::string::npos);

  auto bad_key = NewTlsServerContext(cert_, garbage);
  ASSERT_FALSE(bad_key.ok());
  EXPECT_NE(bad_key.status().message().find("'" + garbage + "' (--tls-key)"), std::string::npos);

  // The key in place of the certificate, and the certificate in place of the key.
  EXPECT_FALSE(NewTlsServerContext(key_, key_).ok());
  EXPECT_FALSE(NewTlsServerContext(cert_, cert_).ok());

  const std::string other_key = Write("other.key", MakeSelfSigned().key);
  auto mismatch = NewTlsServerContext(cert_, other_key);
  ASSERT_FALSE(mismatch.ok());
  EXPECT_NE(mismatch.status().message().find("does not match"), std::string::npos);
  EXPECT_NE(mismatch.status().message().find(other_key), std::string::npos);
}

TEST_F(TlsTest, OneFileWithoutTheOtherIsRefusedAtStart) {
  Router router;
  HttpServerOptions options;
  options.port = 0;
  options.tls_cert_file = cert_;
  auto server = HttpServer::Start(options, &router);
  ASSERT_FALSE(server.ok());
  EXPECT_NE(server.status().message().find("--tls-key"), std::string::npos);
}

// What a client reads until the server closes (over TLS the close comes without close_notify).
template <class Stream>
std::string ReadAll(Stream& s) {
  std::string out;
  char buf[4096];
  boost::system::error_code ec;
  for (;;) {
    const size_t n = s.read_some(net::buffer(buf), ec);
    out.append(buf, n);
    if (ec) return out;
  }
}

TEST_F(TlsTest, ServesHttpsAnswersPlainHttpWith400AndClosesEveryConnection) {
  Router router;
  router.Add("GET", "/ping", RouteScope::kPublic,
             [](const ExchangePtr& ex) { ex->Respond(200, "text/plain", "pong"); });
  HttpServerOptions options;
  options.port = 0;
  options.io_threads = 1;
  options.worker_threads = 1;
  options.slow_threads = 1;
  options.tls_cert_file = cert_;
  options.tls_key_file = key_;
  options.request_timeout = std::chrono::milliseconds(500);  // the handshake's too
  auto server = HttpServer::Start(options, &router);
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  const tcp::endpoint endpoint(net::ip::make_address("127.0.0.1"), (*server)->port());
  net::io_context ioc;
  // A client that connects and says nothing, and stays: the handshake's timeout closes it.
  tcp::socket quiet(ioc);
  quiet.connect(endpoint);

  {  // A TLS client that trusts the certificate.
    ssl::context client(ssl::context::tls_client);
    client.add_certificate_authority(net::buffer(pem_.cert));
    client.set_verify_mode(ssl::verify_peer);
    ssl::stream<tcp::socket> s(ioc, client);
    s.next_layer().connect(endpoint);
    s.handshake(ssl::stream_base::client);
    net::write(s, net::buffer(std::string("GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")));
    const std::string answer = ReadAll(s);
    EXPECT_EQ(answer.rfind("HTTP/1.1 200", 0), 0u) << answer;
    EXPECT_NE(answer.find("\r\n\r\npong"), std::string::npos) << answer;
  }
  {  // Plain HTTP to the TLS port.
    tcp::socket s(ioc);
    s.connect(endpoint);
    net::write(s, net::buffer(std::string("GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")));
    const std::string answer = ReadAll(s);
    EXPECT_EQ(answer.rfind("HTTP/1.1 400", 0), 0u) << answer;
    EXPECT_NE(answer.find("https://"), std::string::npos) << answer;
  }
  {  // A TLS client that does not trust the certificate: its handshake fails.
    ssl::context client(ssl::context::tls_client);
    client.set_verify_mode(ssl::verify_peer);
    ssl::stream<tcp::socket> s(ioc, client);
    s.next_layer().connect(endpoint);
    boost::system::error_code ec;
    s.handshake(ssl::stream_base::client, ec);
    EXPECT_TRUE(ec);
  }
  {  // The start of a handshake, then gone.
    tcp::socket s(ioc);
    s.connect(endpoint);
    net::write(s, net::buffer(std::string("\x16\x03\x01\x00\x05\x01\x00", 7)));
  }
  // Each of those connections is let go of, the quiet one while its client still holds it.
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while ((*server)->num_connections() > 0 && std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ((*server)->num_connections(), 0u);
  EXPECT_EQ(ReadAll(quiet), "");  // closed by the server
}

}  // namespace
}  // namespace llmasos::api
