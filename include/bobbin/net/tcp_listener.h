// bobbin/net/tcp_listener.h
//
// A listening TCP socket. Accept in a loop, one fiber per connection:
//
//   auto l = bobbin::tcp_listener::bind(bobbin::socket_address::loopback(8080)).value();
//   for (;;) {
//     auto s = l.accept();
//     if (!s) { ...; continue; }            // see Errors
//     bobbin::spawn([s = std::move(*s)]() mutable { serve(s); }).detach();
//   }
//
// bind() is control plane: it returns absl::Status with a message
// (address in use, permission denied). accept() is data plane: result<>.
// Blocks: accept() parks the calling fiber (blocks a plain thread).
// Errors: EMFILE/ENFILE when out of file descriptors: the pending connection
// stays queued in the kernel, nothing is lost, and a server should back off
// briefly and retry (examples/echo_server.cc shows it). ECONNABORTED for a
// connection reset before it was accepted: just accept again.
// Stopping an accept loop from elsewhere: stop_accepting() may be called from
// any thread or fiber while another fiber is in (or about to enter) accept();
// that accept() and every later one fail with std::errc::invalid_argument
// (connections still in the backlog are reset). The accepting fiber then
// close()s the listener itself. close() too makes a pending accept() return
// operation_canceled, but, like destroying the object, it must not race with
// other calls on the same tcp_listener object.
#ifndef BOBBIN_NET_TCP_LISTENER_H_
#define BOBBIN_NET_TCP_LISTENER_H_

#include "absl/status/statusor.h"
#include "bobbin/config.h"
#include "bobbin/deadline.h"
#include "bobbin/internal/spin_lock.h"
#include "bobbin/net/address.h"
#include "bobbin/net/tcp_stream.h"
#include "bobbin/result.h"

namespace bobbin {

class BOBBIN_API tcp_listener {
 public:
  tcp_listener() = default;
  tcp_listener(tcp_listener&& o) noexcept;
  tcp_listener& operator=(tcp_listener&& o) noexcept;
  ~tcp_listener();

  // Binds with SO_REUSEADDR and listens. Port 0 picks a free port (see
  // local_address()).
  static absl::StatusOr<tcp_listener> bind(const socket_address& at, int backlog = 4096);

  result<tcp_stream> accept(deadline d = {});
  socket_address local_address() const;
  void close();
  // Thread-safe, also against a concurrent close(): see the header comment.
  void stop_accepting();
  bool is_open() const noexcept { return io_ != nullptr; }

 private:
  internal::io_object* io_ = nullptr;
  // Orders stop_accepting() against close(): held while io_ is read there,
  // and by close() to set closing_ before it closes the fd and to take io_.
  internal::spin_lock stop_lock_;
  bool closing_ = false;
  socket_address local_;
};

}  // namespace bobbin

#endif  // BOBBIN_NET_TCP_LISTENER_H_
