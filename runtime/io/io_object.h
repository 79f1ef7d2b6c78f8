// Not part of the bobbin API.
//
// An open file descriptor shared by the operations running on it, so that
// close() from any fiber or thread can cancel them cleanly (Go's pollDesc
// role). Each operation brackets itself with begin()/end(); close():
//   1. marks the object closed (new operations fail with operation_canceled);
//   2. for every carrier with operations in flight, asks that carrier's ring
//      (the rings are single-issuer) to cancel all operations on the fd; the
//      cancel request counts as in flight itself, so the fd stays open until
//      the kernel has answered it: an fd number is never reused under a
//      pending cancel;
//   3. shuts a socket down, which wakes plain threads blocked in syscalls;
//   4. parks until nothing is in flight, then closes the fd.
// Operations that complete with an error after close() report
// operation_canceled, whatever the kernel said.
#ifndef BOBBIN_RUNTIME_IO_IO_OBJECT_H_
#define BOBBIN_RUNTIME_IO_IO_OBJECT_H_

#include <liburing.h>

#include <atomic>
#include <cstdint>
#include <type_traits>

#include "absl/container/inlined_vector.h"
#include "bobbin/deadline.h"
#include "bobbin/internal/park.h"
#include "bobbin/result.h"
#include "bobbin/wait_reason.h"
#include "runtime/sched/carrier.h"

namespace bobbin::internal {

class carrier;
class runtime_impl;

class io_object {
 public:
  io_object(int fd, bool is_socket);
  io_object(const io_object&) = delete;
  io_object& operator=(const io_object&) = delete;

  int fd() const { return fd_; }
  bool closed() const;

  // Runs one operation: on a fiber through the carrier's ring (`prep` fills
  // the SQE), on a plain thread through `sys` (a blocking system call that
  // returns -errno). Returns the result or -errno; -ECANCELED once closed,
  // -ETIMEDOUT when `d` passed.
  // On a thread with a deadline, `sys` runs once poll() reports `events`.
  template <class Prep, class Sys>
  int run(Prep&& prep, Sys&& sys, wait_reason reason, deadline d, short events);

  // Runs `sys`, a system call that returns at once (the fd is non-blocking),
  // as an operation in flight, so that close() cannot close the fd, and its
  // number be reused, under it. Returns its result, or -ECANCELED once
  // closed. For trying an operation before parking for it.
  template <class Sys>
  int run_now(Sys&& sys) {
    if (int r = begin(kNowIndex, nullptr); r < 0) return r;
    const int r = sys();
    end(kNowIndex);
    return r;
  }

  // Closes as described above. Idempotent; later calls return at once.
  void close();

  // Hands the fd to the caller (the object will not close it).
  int release_fd();

  // How many operations in a row run_now() completed without the caller
  // parking (tcp_listener::accept keeps it to bound a burst). Relaxed: a
  // count shared by fibers accepting on one listener needs no order.
  std::atomic<uint32_t> completed_without_parking{0};

 private:
  friend struct cancel_done;
  // -ECANCELED if closed (unless `even_if_closed`, for close's own cancels).
  // `registers_on_epoll`: the operation is marked owned on an epoll carrier
  // (remembered in epoll_carriers_).
  int begin(int carrier_index, runtime_impl* rt, bool even_if_closed = false, bool registers_on_epoll = false);
  void end(int carrier_index);
  int run_on_fiber(carrier* c, void (*prep)(void*, io_uring_sqe*), void* prep_ctx, wait_reason reason, deadline d);
  int run_on_thread(int (*sys)(void*), void* sys_ctx, deadline d, short events, wait_reason reason);

  // In inflight_, what run_now() counts under: as a plain thread's call (-1)
  // it needs no ring to cancel it, and close() waits for it to end.
  static constexpr int kNowIndex = -1;

  int fd_;
  const bool is_socket_;
  // On the epoll backend, this object's socket operations carry this key,
  // so that its fd is registered once per carrier, edge-triggered
  // (epoll_backend.h, "Registrations"): the object closes the fd itself.
  const uint32_t epoll_owner_key_;
  mutable spin_lock lock_;
  bool closed_ = false;
  bool fd_released_ = false;
  // Operations in flight, per carrier index; -1 counts plain threads.
  absl::InlinedVector<std::pair<int, uint32_t>, 4> inflight_;
  // The runtime whose carriers run this fd's operations (an fd is used by
  // the fibers of one runtime).
  runtime_impl* rt_ = nullptr;
  waiter_list closers_;
  // The carriers whose epoll sets this fd may be registered on, edge-
  // triggered (epoll_owner_key_): close() takes it off each before closing.
  absl::InlinedVector<int, 2> epoll_carriers_;
};

template <class Prep, class Sys>
int io_object::run(Prep&& prep, Sys&& sys, wait_reason reason, deadline d, short events) {
  if (carrier* c = current_fiber_carrier()) {
    return run_on_fiber(
        c, [](void* ctx, io_uring_sqe* sqe) { (*static_cast<std::remove_reference_t<Prep>*>(ctx))(sqe); }, &prep,
        reason, d);
  }
  return run_on_thread([](void* ctx) { return (*static_cast<std::remove_reference_t<Sys>*>(ctx))(); }, &sys, d,
                       events, reason);
}

// Maps an operation's -errno result to bobbin's error style.
inline std::error_code to_error(int neg_errno) { return errno_code(-neg_errno); }

// On a plain thread: waits until `fd` is ready for `events` or `d` passes.
// Returns 0, -ETIMEDOUT, or -errno.
int poll_fd(int fd, short events, deadline d);

}  // namespace bobbin::internal

#endif  // BOBBIN_RUNTIME_IO_IO_OBJECT_H_
