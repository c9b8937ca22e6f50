#include "services/registry/address_policy.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <cstring>

namespace llmasos::registry {
namespace {

// `ip` in host byte order.
AddressClass ClassifyV4(uint32_t ip) {
  auto in = [ip](uint32_t net, int bits) { return (ip >> (32 - bits)) == (net >> (32 - bits)); };
  if (in(0x7f000000, 8)) return AddressClass::kLoopback;
  if (in(0x0a000000, 8) || in(0xac100000, 12) || in(0xc0a80000, 16) || in(0x64400000, 10)) {
    return AddressClass::kPrivate;
  }
  if (in(0xa9fe0000, 16)) return AddressClass::kLinkLocal;
  if (in(0x00000000, 8)) return AddressClass::kUnspecified;
  if (in(0xe0000000, 4) || ip == 0xffffffff) return AddressClass::kMulticast;
  return AddressClass::kPublic;
}

AddressClass ClassifyV6(const in6_addr& a) {
  const uint8_t* b = a.s6_addr;
  static constexpr uint8_t kMappedPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::memcmp(b, kMappedPrefix, 12) == 0) {
    return ClassifyV4(uint32_t{b[12]} << 24 | uint32_t{b[13]} << 16 | uint32_t{b[14]} << 8 | b[15]);
  }
  bool zero_prefix = std::all_of(b, b + 15, [](uint8_t x) { return x == 0; });
  if (zero_prefix && b[15] == 1) return AddressClass::kLoopback;
  if (zero_prefix && b[15] == 0) return AddressClass::kUnspecified;
  if ((b[0] & 0xfe) == 0xfc) return AddressClass::kPrivate;
  if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) return AddressClass::kLinkLocal;
  if (b[0] == 0xff) return AddressClass::kMulticast;
  return AddressClass::kPublic;
}

}  // namespace

std::string_view AddressClassName(AddressClass c) {
  switch (c) {
    case AddressClass::kPublic: return "public";
    case AddressClass::kLoopback: return "loopback";
    case AddressClass::kPrivate: return "private";
    case AddressClass::kLinkLocal: return "link-local";
    case AddressClass::kUnspecified: return "unspecified";
    case AddressClass::kMulticast: return "multicast";
  }
  return "unknown";
}

StatusOr<AddressClass> ClassifyAddress(const sockaddr* addr, socklen_t len) {
  if (addr->sa_family == AF_INET && len >= static_cast<socklen_t>(sizeof(sockaddr_in))) {
    return ClassifyV4(ntohl(reinterpret_cast<const sockaddr_in*>(addr)->sin_addr.s_addr));
  }
  if (addr->sa_family == AF_INET6 && len >= static_cast<socklen_t>(sizeof(sockaddr_in6))) {
    return ClassifyV6(reinterpret_cast<const sockaddr_in6*>(addr)->sin6_addr);
  }
  return InvalidArgumentError("address family " + std::to_string(addr->sa_family) +
                              " is neither IPv4 nor IPv6");
}

StatusOr<AddressClass> ClassifyAddressText(std::string_view text) {
  std::string s(text);
  in_addr v4;
  if (::inet_pton(AF_INET, s.c_str(), &v4) == 1) return ClassifyV4(ntohl(v4.s_addr));
  in6_addr v6;
  if (::inet_pton(AF_INET6, s.c_str(), &v6) == 1) return ClassifyV6(v6);
  return InvalidArgumentError("not a numeric IP address: '" + s + "'");
}

std::string AddressText(const sockaddr* addr, socklen_t len) {
  char buf[INET6_ADDRSTRLEN] = "?";
  if (addr->sa_family == AF_INET && len >= static_cast<socklen_t>(sizeof(sockaddr_in))) {
    ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(addr)->sin_addr, buf, sizeof(buf));
  } else if (addr->sa_family == AF_INET6 && len >= static_cast<socklen_t>(sizeof(sockaddr_in6))) {
    ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(addr)->sin6_addr, buf, sizeof(buf));
  }
  return buf;
}

}  // namespace llmasos::registry
