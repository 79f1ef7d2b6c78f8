// bobbin/net/address.h
//
// An IPv4 or IPv6 socket address (IP and port), parsed from text without
// name resolution (resolving names blocks in getaddrinfo: see README
// "Pinning" for how to do that off the carriers).
//
//   auto a = bobbin::socket_address::parse("127.0.0.1:8080").value();
//   auto b = bobbin::socket_address::parse("[::1]:443").value();
//   auto c = bobbin::socket_address::loopback(0);  // 127.0.0.1, any port
//
// Errors: parse() returns std::errc::invalid_argument for malformed text.
#ifndef BOBBIN_NET_ADDRESS_H_
#define BOBBIN_NET_ADDRESS_H_

#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "bobbin/config.h"
#include "bobbin/result.h"

namespace bobbin {

class BOBBIN_API socket_address {
 public:
  socket_address() = default;
  // "a.b.c.d:port" or "[v6]:port".
  static result<socket_address> parse(std::string_view text);
  static socket_address loopback(uint16_t port);  // 127.0.0.1
  static socket_address any(uint16_t port);       // 0.0.0.0
  static socket_address from_sockaddr(const sockaddr* sa, socklen_t len);

  uint16_t port() const noexcept;
  int family() const noexcept { return storage_.ss_family; }
  std::string to_string() const;

  const sockaddr* data() const noexcept { return reinterpret_cast<const sockaddr*>(&storage_); }
  sockaddr* data() noexcept { return reinterpret_cast<sockaddr*>(&storage_); }
  socklen_t size() const noexcept { return len_; }

 private:
  sockaddr_storage storage_{};
  socklen_t len_ = 0;
};

}  // namespace bobbin

#endif  // BOBBIN_NET_ADDRESS_H_
