#include "api/tls.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>

#include "util/file.h"

namespace llmasos::api {
namespace {

// The reasons in this thread's OpenSSL error queue, innermost first, which it empties.
std::string OpenSslReason() {
  std::string out;
  while (const unsigned long e = ERR_get_error()) {
    const char* reason = ERR_reason_error_string(e);
    const std::string text = reason != nullptr ? reason : "error " + std::to_string(ERR_GET_REASON(e));
    if (out.find(text) != std::string::npos) continue;
    if (!out.empty()) out += "; ";
    out += text;
  }
  return out.empty() ? "no reason given" : out;
}

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};

std::unique_ptr<BIO, BioFree> MemoryBio(const std::string& data) {
  return std::unique_ptr<BIO, BioFree>(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
}

// The PEM certificates in `pem` on `ctx`: the first is the server's, the rest its chain.
// Returns false (OpenSSL's error queue says why) when there is none or one is malformed.
bool UseCertificateChain(SSL_CTX* ctx, const std::string& pem) {
  auto bio = MemoryBio(pem);
  if (bio == nullptr) return false;
  std::unique_ptr<X509, X509Free> leaf(PEM_read_bio_X509_AUX(bio.get(), nullptr, nullptr, nullptr));
  if (leaf == nullptr || SSL_CTX_use_certificate(ctx, leaf.get()) != 1) return false;
  SSL_CTX_clear_chain_certs(ctx);
  while (X509* next = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
    if (SSL_CTX_add0_chain_cert(ctx, next) != 1) {  // takes `next` only when it succeeds
      X509_free(next);
      return false;
    }
  }
  // The loop ends at the end of the data (PEM "no start line", not an error) or at a
  // malformed certificate.
  const unsigned long last = ERR_peek_last_error();
  if (ERR_GET_LIB(last) == ERR_LIB_PEM && ERR_GET_REASON(last) == PEM_R_NO_START_LINE) {
    ERR_clear_error();
    return true;
  }
  return last == 0;
}

// A password callback that gives none: an encrypted key fails instead of prompting on the
// terminal.
int NoPassword(char*, int, int, void*) { return 0; }

}  // namespace

StatusOr<std::unique_ptr<boost::asio::ssl::context>> NewTlsServerContext(const std::string& cert_file,
                                                                         const std::string& key_file) {
  namespace ssl = boost::asio::ssl;
  auto cert = ReadFileToString(cert_file, kMaxTlsFileBytes);
  if (!cert.ok()) return cert.status().Annotate("reading the TLS certificate (--tls-cert)");
  auto key = ReadFileToString(key_file, kMaxTlsFileBytes);
  if (!key.ok()) return key.status().Annotate("reading the TLS key (--tls-key)");

  auto ctx = std::make_unique<ssl::context>(ssl::context::tls_server);
  SSL_CTX* native = ctx->native_handle();
  ERR_clear_error();
  SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION);
  SSL_CTX_set_default_passwd_cb(native, NoPassword);
  if (!UseCertificateChain(native, *cert)) {
    return InvalidArgumentError("the TLS certificate '" + cert_file +
                                "' (--tls-cert) holds no usable PEM certificate (OpenSSL: " + OpenSslReason() + ")");
  }
  ERR_clear_error();
  auto bio = MemoryBio(*key);
  if (bio == nullptr) return InternalError("OpenSSL could not allocate a buffer: " + OpenSslReason());
  std::unique_ptr<EVP_PKEY, PkeyFree> pkey(PEM_read_bio_PrivateKey(bio.get(), nullptr, NoPassword, nullptr));
  if (pkey == nullptr) {
    return InvalidArgumentError("the TLS key '" + key_file +
                                "' (--tls-key) holds no unencrypted PEM private key (OpenSSL: " + OpenSslReason() + ")");
  }
  if (SSL_CTX_use_PrivateKey(native, pkey.get()) != 1 || SSL_CTX_check_private_key(native) != 1) {
    return InvalidArgumentError("the TLS key '" + key_file + "' (--tls-key) does not match the certificate '" +
                                cert_file + "' (--tls-cert) (OpenSSL: " + OpenSslReason() + ")");
  }
  return ctx;
}

}  // namespace llmasos::api
