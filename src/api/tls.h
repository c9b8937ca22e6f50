// The daemon's TLS: a server context from a PEM certificate chain and its private key
// (OpenSSL through Boost.Asio's ssl).
//
// Each failure is a start-up error that names the file and says what is wrong with it: a file
// that cannot be read (or is over kMaxTlsFileBytes), a certificate file without a PEM
// certificate, a key file without an unencrypted PEM private key (an encrypted key is refused,
// never prompted for), a key that does not belong to the certificate. TLS 1.2 is the oldest
// version served.
#ifndef LLMASOS_API_TLS_H_
#define LLMASOS_API_TLS_H_

#include <memory>
#include <string>

#include <boost/asio/ssl/context.hpp>

#include "util/status.h"

namespace llmasos::api {

inline constexpr size_t kMaxTlsFileBytes = size_t{1} << 20;

// `cert_file`: the server's certificate first, then any intermediates (PEM); `key_file`: its
// private key (PEM, unencrypted). InvalidArgument or the file's read error, as above.
StatusOr<std::unique_ptr<boost::asio::ssl::context>> NewTlsServerContext(const std::string& cert_file,
                                                                         const std::string& key_file);

}  // namespace llmasos::api

#endif  // LLMASOS_API_TLS_H_
