#include "bobbin/net/address.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <charconv>
#include <cstring>

namespace bobbin {

namespace {
result<uint16_t> parse_port(std::string_view s) {
  unsigned v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || s.empty() || v > 65535) {
    return std::make_error_code(std::errc::invalid_argument);
  }
  return static_cast<uint16_t>(v);
}
}  // namespace

result<socket_address> socket_address::parse(std::string_view text) {
  socket_address a;
  std::string host;
  std::string_view port_text;
  if (!text.empty() && text.front() == '[') {
    size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return std::make_error_code(std::errc::invalid_argument);
    }
    host = std::string(text.substr(1, close - 1));
    port_text = text.substr(close + 2);
    auto port = parse_port(port_text);
    if (!port) return port.error();
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&a.storage_);
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(*port);
    if (inet_pton(AF_INET6, host.c_str(), &in6->sin6_addr) != 1) return std::make_error_code(std::errc::invalid_argument);
    a.len_ = sizeof(sockaddr_in6);
    return a;
  }
  size_t colon = text.rfind(':');
  if (colon == std::string_view::npos) return std::make_error_code(std::errc::invalid_argument);
  host = std::string(text.substr(0, colon));
  auto port = parse_port(text.substr(colon + 1));
  if (!port) return port.error();
  auto* in = reinterpret_cast<sockaddr_in*>(&a.storage_);
  in->sin_family = AF_INET;
  in->sin_port = htons(*port);
  if (inet_pton(AF_INET, host.c_str(), &in->sin_addr) != 1) return std::make_error_code(std::errc::invalid_argument);
  a.len_ = sizeof(sockaddr_in);
  return a;
}

socket_address socket_address::loopback(uint16_t port) {
  socket_address a;
  auto* in = reinterpret_cast<sockaddr_in*>(&a.storage_);
  in->sin_family = AF_INET;
  in->sin_port = htons(port);
  in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.len_ = sizeof(sockaddr_in);
  return a;
}

socket_address socket_address::any(uint16_t port) {
  socket_address a;
  auto* in = reinterpret_cast<sockaddr_in*>(&a.storage_);
  in->sin_family = AF_INET;
  in->sin_port = htons(port);
  in->sin_addr.s_addr = htonl(INADDR_ANY);
  a.len_ = sizeof(sockaddr_in);
  return a;
}

socket_address socket_address::from_sockaddr(const sockaddr* sa, socklen_t len) {
  socket_address a;
  if (len > sizeof a.storage_) len = sizeof a.storage_;
  std::memcpy(&a.storage_, sa, len);
  a.len_ = len;
  return a;
}

uint16_t socket_address::port() const noexcept {
  if (storage_.ss_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&storage_)->sin_port);
  if (storage_.ss_family == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_port);
  return 0;
}

std::string socket_address::to_string() const {
  char buf[INET6_ADDRSTRLEN] = {};
  if (storage_.ss_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&storage_)->sin_addr, buf, sizeof buf);
    return std::string(buf) + ":" + std::to_string(port());
  }
  if (storage_.ss_family == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_addr, buf, sizeof buf);
    return "[" + std::string(buf) + "]:" + std::to_string(port());
  }
  return "(unspecified)";
}

}  // namespace bobbin
