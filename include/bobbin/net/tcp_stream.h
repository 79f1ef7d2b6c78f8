// bobbin/net/tcp_stream.h
//
// A connected TCP socket with blocking-style calls.
//
//   auto s = bobbin::tcp_stream::connect(addr, 2s).value();
//   s.write_all(request).value();
//   char buf[4096];
//   bobbin::io_result r = s.read_some(buf, 30s);
//   if (!r) ...;               // r.error: ECONNRESET, timed_out, ...
//   else if (r.bytes == 0) ... // orderly end of stream
//
// Blocks: every call parks the calling fiber until the kernel answers, on
// the io_uring ring of the fiber's carrier (no carrier time while parked).
// On a plain thread the same calls are ordinary blocking system calls, so
// code runs on or off the runtime.
// Concurrency: one fiber may read while another writes; close() may be
// called from any fiber or thread at any time and makes pending and later
// calls return std::errc::operation_canceled (it waits for them to leave the
// kernel, then closes the fd). Two concurrent readers (or writers) is a bug.
// Deadlines: every blocking call takes one (bobbin/deadline.h); when it
// passes the call returns std::errc::timed_out and the stream stays usable.
// Errors: io_result (bobbin/result.h) with the exact errno; a peer reset is
// ECONNRESET (read) or EPIPE/ECONNRESET (write, never SIGPIPE).
// Cost: one SQE per call, submitted in a batch with other fibers' SQEs.
#ifndef BOBBIN_NET_TCP_STREAM_H_
#define BOBBIN_NET_TCP_STREAM_H_

#include <cstddef>
#include <span>
#include <string_view>

#include "bobbin/config.h"
#include "bobbin/deadline.h"
#include "bobbin/net/address.h"
#include "bobbin/result.h"

namespace bobbin {
namespace internal {
class io_object;
}

class BOBBIN_API tcp_stream {
 public:
  tcp_stream() = default;
  // Takes ownership of a connected socket fd.
  explicit tcp_stream(int fd);
  tcp_stream(tcp_stream&& o) noexcept;
  tcp_stream& operator=(tcp_stream&& o) noexcept;
  ~tcp_stream();  // close()

  // Connects to `to`; std::errc::timed_out if `d` passes first.
  static result<tcp_stream> connect(const socket_address& to, deadline d = {});

  bool is_open() const noexcept { return io_ != nullptr; }
  int native_handle() const noexcept;

  // Reads what is available, up to buf.size() bytes; bytes == 0 without an
  // error means the peer closed its side.
  io_result read_some(std::span<std::byte> buf, deadline d = {});
  io_result read_some(std::span<char> buf, deadline d = {}) { return read_some(std::as_writable_bytes(buf), d); }
  // Reads exactly buf.size() bytes; io_errc::unexpected_eof if the stream
  // ends first (bytes says how many arrived).
  io_result read_exact(std::span<std::byte> buf, deadline d = {});
  io_result read_exact(std::span<char> buf, deadline d = {}) { return read_exact(std::as_writable_bytes(buf), d); }
  // Writes all of buf, however many system calls it takes.
  io_result write_all(std::span<const std::byte> buf, deadline d = {});
  io_result write_all(std::string_view s, deadline d = {}) { return write_all(std::as_bytes(std::span(s)), d); }

  enum class shutdown_how { read = 0, write = 1, both = 2 };
  result<void> shutdown(shutdown_how how = shutdown_how::write);
  void close();

  result<void> set_nodelay(bool on);
  result<socket_address> peer_address() const;
  result<socket_address> local_address() const;

 private:
  internal::io_object* io_ = nullptr;
};

}  // namespace bobbin

#endif  // BOBBIN_NET_TCP_STREAM_H_
