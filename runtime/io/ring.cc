#include "runtime/io/ring.h"

#include <cstring>

#include "runtime/io/setup_failure.h"

namespace bobbin::internal {

ring::~ring() {
  if (ready_) io_uring_queue_exit(&ring_);
}

absl::Status ring::init(unsigned entries) {
  // Best first; each fallback drops flags an older kernel rejects (EINVAL).
  const unsigned candidates[] = {
      IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_TASKRUN_FLAG |
          IORING_SETUP_SUBMIT_ALL | IORING_SETUP_CQSIZE,
      IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_CQSIZE,
      IORING_SETUP_CQSIZE,
  };
  int err = 0;
  for (unsigned flags : candidates) {
    io_uring_params p;
    std::memset(&p, 0, sizeof p);
    p.flags = flags;
    // Room for many parked fibers' completions before the kernel falls back
    // to its (slower) overflow list.
    p.cq_entries = entries * 4;
    err = io_uring_queue_init_params(entries, &ring_, &p);
    if (err == 0) {
      flags_ = flags;
      ready_ = true;
      return absl::OkStatus();
    }
    if (err != -EINVAL) break;
  }
  return explain_setup_failure(err, observe_setup_environment());
}

bool ring::needs_enter() {
  if (io_uring_sq_ready(&ring_) != 0 || more_deferred_) return true;
  unsigned sq_flags = IO_URING_READ_ONCE(*ring_.sq.kflags);
  return (sq_flags & (IORING_SQ_TASKRUN | IORING_SQ_CQ_OVERFLOW)) != 0;
}

int ring::enter(bool wait) {
  if (wait) return io_uring_submit_and_wait(&ring_, 1);
  if ((flags_ & IORING_SETUP_DEFER_TASKRUN) != 0) {
    // Run every deferred completion there is CQ room for, in one system
    // call: ask for that many with a zero timeout (-ETIME when fewer came).
    // A plain GETEVENTS runs 20 at most and keeps the rest for later enters
    // (ring.h): under a steady load of timed waits they piled up by tens of
    // thousands per second, and a fiber whose timer had fired waited seconds
    // behind them. Collecting them 20 per enter instead measured slower at
    // 1,000 echo connections (perf/RESULTS.md, "Collecting the completions
    // a DEFER_TASKRUN enter keeps back"): one enter does it all.
    const unsigned room = ring_.cq.ring_entries - io_uring_cq_ready(&ring_);
    if (room == 0) return io_uring_submit(&ring_);
    __kernel_timespec zero{};
    io_uring_cqe* cqe = nullptr;
    return io_uring_submit_and_wait_timeout(&ring_, &cqe, room, &zero, nullptr);
  }
  if (io_uring_sq_ready(&ring_) != 0) return io_uring_submit_and_get_events(&ring_);
  return io_uring_get_events(&ring_);
}

}  // namespace bobbin::internal
