// Which network addresses a pull may connect to. By default only public unicast addresses:
// a URL (or a redirect, or a DNS answer) that points at loopback, a private network or a
// link-local address could otherwise make llmasos fetch from services that trust the
// local machine (cloud metadata at 169.254.169.254, admin ports on 127.0.0.1).
//
// IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) are classified as the IPv4 address they carry.
//
// Thread safety: pure functions.
#ifndef LLMASOS_SERVICES_REGISTRY_ADDRESS_POLICY_H_
#define LLMASOS_SERVICES_REGISTRY_ADDRESS_POLICY_H_

#include <sys/socket.h>

#include <string>
#include <string_view>

#include "util/status.h"

namespace llmasos::registry {

enum class AddressClass {
  kPublic,
  kLoopback,     // 127.0.0.0/8, ::1
  kPrivate,      // 10/8, 172.16/12, 192.168/16, 100.64/10 (carrier NAT), fc00::/7
  kLinkLocal,    // 169.254/16, fe80::/10
  kUnspecified,  // 0.0.0.0/8, ::
  kMulticast,    // 224/4, 255.255.255.255, ff00::/8
};

std::string_view AddressClassName(AddressClass c);

// REQUIRES: `addr` points at `len` bytes of a sockaddr. kInvalidArgument for a family other
// than AF_INET / AF_INET6 (a pull never uses one).
StatusOr<AddressClass> ClassifyAddress(const sockaddr* addr, socklen_t len);
// For tests and messages: a numeric IPv4 or IPv6 address.
StatusOr<AddressClass> ClassifyAddressText(std::string_view text);

// The address as text ("127.0.0.1", "::1"); "?" if it cannot be printed.
std::string AddressText(const sockaddr* addr, socklen_t len);

}  // namespace llmasos::registry

#endif  // LLMASOS_SERVICES_REGISTRY_ADDRESS_POLICY_H_
