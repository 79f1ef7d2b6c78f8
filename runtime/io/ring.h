// Not part of the bobbin API.
//
// One io_uring per carrier, created on the carrier's own thread so it can use
// IORING_SETUP_SINGLE_ISSUER and DEFER_TASKRUN (completions are processed
// only when the carrier asks, in batches, with no interrupting task work).
// Kernels without those flags get a plain ring; the probe is in init().
//
// Completions name what to do by user_data:
//   0                  nothing (link timeouts, cancel requests)
//   kWakeUserData      the carrier's eventfd read completed: someone woke it
//   kFutexPollUserData the carrier's futex ring has completions to reap
//   anything else      a `completion*` whose fn runs on the carrier thread
#ifndef BOBBIN_RUNTIME_IO_RING_H_
#define BOBBIN_RUNTIME_IO_RING_H_

#include <liburing.h>

#include <cstdint>

#include "absl/status/status.h"

namespace bobbin::internal {

struct completion {
  void (*fn)(completion* self, int res, uint32_t flags);
};

inline constexpr uint64_t kWakeUserData = 1;
inline constexpr uint64_t kFutexPollUserData = 2;

class ring {
 public:
  ring() = default;
  ring(const ring&) = delete;
  ring& operator=(const ring&) = delete;
  ~ring();

  absl::Status init(unsigned entries);
  bool initialized() const { return ready_; }

  // A free SQE, or null when the submission queue is full.
  io_uring_sqe* try_get_sqe() { return io_uring_get_sqe(&ring_); }
  unsigned sq_space_left() { return io_uring_sq_space_left(&ring_); }
  unsigned pending_sqes() { return io_uring_sq_ready(&ring_); }

  // True when an io_uring_enter is needed to see new completions or to hand
  // over prepared SQEs (deferred task work pending, CQ overflow, SQEs queued).
  bool needs_enter();

  // Submits what is prepared; with wait, also sleeps until at least one
  // completion is there. Returns io_uring_enter's result (-errno on failure).
  int enter(bool wait);

  // Tells the ring how many completions the last drain() reaped, so that it
  // knows whether deferred completions may still wait in the kernel.
  void reaped(unsigned n) {
    if ((flags_ & IORING_SETUP_DEFER_TASKRUN) != 0) more_deferred_ = n >= kKernelDeferredBatch;
  }

  // Calls fn(cqe) for every completion now in the CQ, then advances it.
  template <class Fn>
  unsigned drain(Fn&& fn) {
    unsigned head, n = 0;
    io_uring_cqe* cqe;
    io_uring_for_each_cqe(&ring_, head, cqe) {
      fn(cqe);
      n++;
    }
    io_uring_cq_advance(&ring_, n);
    return n;
  }
  bool cq_ready() { return io_uring_cq_ready(&ring_) != 0; }

  io_uring* raw() { return &ring_; }
  unsigned setup_flags() const { return flags_; }

 private:
  // Since Linux 6.13 an io_uring_enter on a DEFER_TASKRUN ring runs at most
  // max(20, min_complete) deferred completions (task work) per pass
  // (IO_LOCAL_TW_DEFAULT_MAX) and keeps the rest for a later enter. 6.18
  // raises IORING_SQ_TASKRUN for them (measured); the first 6.13 patch
  // looked only at new work when deciding to. A drain that reaped 20 or more
  // may have left some behind, so the next turn enters again either way.
  static constexpr unsigned kKernelDeferredBatch = 20;

  io_uring ring_{};
  unsigned flags_ = 0;
  bool ready_ = false;
  bool more_deferred_ = false;
};

}  // namespace bobbin::internal

#endif  // BOBBIN_RUNTIME_IO_RING_H_
