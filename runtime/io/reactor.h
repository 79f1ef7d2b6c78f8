// Not part of the bobbin API.
//
// A carrier's reactor: where its fibers' kernel operations go and where their
// completions come back. One per carrier, used only by the carrier's own
// thread, except wake(), which any thread may call.
//
// How a fiber waits on the kernel (runtime/io/io_wait.h, runtime/park/park.cc,
// runtime/intercept): it takes an SQE with get_sqe(), points its user_data at
// a `completion` on its own stack and parks. The carrier's loop calls
// submit_and_collect() (hands every prepared SQE to the kernel in one
// io_uring_enter, and with `wait` sleeps until something completes), then
// reap(), which runs each completion's fn on the carrier's stack: that is
// where fibers are made runnable again. A carrier that has nothing to run
// arms a read of its eventfd (arm_wake) before it sleeps, so that wake()
// from another thread ends the sleep.
//
// The implementation is io_uring (runtime/io/ring.h holds the ring itself:
// its set-up flags and the rules of its non-waiting enter), or, where
// io_uring is refused, epoll (runtime/io/epoll_backend.h), chosen for the
// whole runtime at start-up (scheduler.cc). Operations are prepared with
// liburing's io_uring_prep_* on the SQE get_sqe() returns, for both: the
// epoll backend reads the same description and answers with the same
// completions.
//
// What happens when the kernel refuses:
//   - a full submission queue: get_sqe() and reserve_sqes() submit what is
//     prepared to make room; EBUSY or EAGAIN from that submit (the CQ
//     overflowed, or the kernel is short of memory) makes them reap first,
//     through the owner's reap function, and try again, after 100 refusals
//     in a row with a 1 ms nap between tries, for at most about a second;
//     then, and on any other error, the process ends with a message that
//     names the call and the errno;
//   - io_uring_enter failing with EINTR (a signal, e.g. a profiler's), EBUSY
//     or EAGAIN is retried on the next loop turn; ETIME is a timed enter that
//     ended; any other error is fatal ("bobbin: io_uring_enter failed").
#ifndef BOBBIN_RUNTIME_IO_REACTOR_H_
#define BOBBIN_RUNTIME_IO_REACTOR_H_

#include <liburing.h>

#include <atomic>
#include <cstdint>

#include <memory>

#include "absl/status/status.h"
#include "runtime/io/epoll_backend.h"
#include "runtime/io/ring.h"
#include "runtime/util/counter.h"

namespace bobbin::internal {

// How many of the kernel's worker threads (io-wq) a thread's rings may use.
struct io_worker_limits {
  unsigned bounded = 0;    // for regular files and block devices
  unsigned unbounded = 0;  // for the rest
};

class reactor {
 public:
  // Called when the submission queue must be emptied and the kernel will
  // not take more until completions are reaped: the owner reaps (for a
  // carrier, poll_io(false), which puts the fibers it readies where its
  // queueing rules say).
  using reap_fn = void (*)(void* owner);

  reactor() = default;
  reactor(const reactor&) = delete;
  reactor& operator=(const reactor&) = delete;
  ~reactor();

  // Sets up the ring and the wake-up eventfd. On the owning thread: the ring
  // is single-issuer. `max_workers`: at most this many of the kernel's
  // worker threads for this thread's rings, {bounded, unbounded} (0: the
  // kernel's limit; runtime_options::io_workers_bounded).
  // With `use_epoll`, the epoll backend instead of a ring; its worker
  // threads for blocking jobs number max_workers.bounded (4 if 0).
  absl::Status init(unsigned entries, reap_fn reap, void* owner, io_worker_limits max_workers = {},
                    bool use_epoll = false);
  bool on_epoll() const { return epoll_ != nullptr; }
  // The epoll backend's epoll instance (-1 on io_uring). Any thread.
  int epoll_fd() const { return epoll_ ? epoll_->epoll_fd() : -1; }

  // --- preparing operations ---
  // A free SQE, submitting (and reaping, if the kernel asks) when the queue
  // is full. Never null.
  io_uring_sqe* get_sqe();
  // Room for `n` SQEs that must be submitted together (a linked chain).
  void reserve_sqes(unsigned n);
  // Prepares a timeout that completes `fired` with -ETIME at `when` (on
  // CLOCK_MONOTONIC), unless removed first (remove_timeout with `fired`).
  // `when` must stay valid until the timeout is submitted.
  void arm_timer(const __kernel_timespec& when, completion* fired);
  // Prepares a cancel of every operation whose user_data is `user_data`.
  // Never submits or reaps, so it is safe inside a completion's fn; false
  // when the submission queue is full (the caller retries later).
  bool try_cancel(uint64_t user_data);
  // Prepares the cancel of every operation on `fd`, of every operation with
  // `user_data`, or the removal of the timeout with `user_data`; `done`
  // gets the request's own completion (null: none).
  void cancel_fd(int fd, completion* done);
  void cancel(uint64_t user_data, completion* done);
  void remove_timeout(uint64_t user_data, completion* done);

  // --- collecting completions ---
  // Whether completions are ready to reap now.
  bool has_completions() { return epoll_ ? epoll_->has_completions() : ring_.cq_ready(); }
  // Whether an enter is needed: prepared SQEs, completions the kernel holds
  // back until asked (deferred task work), or an overflowed CQ.
  bool needs_enter() { return epoll_ ? epoll_->needs_enter() : ring_.needs_enter(); }
  // Submits what is prepared and collects the completions the kernel holds
  // back; with `wait`, sleeps until at least one completion is there. Does
  // nothing without `wait` when nothing needs an enter.
  void submit_and_collect(bool wait);
  // Runs the fn of every completion in the CQ, in order. Returns how many
  // completions were reaped.
  unsigned reap();
  // At shutdown: asks the kernel for every completion it still holds back.
  // True if any came.
  bool collect_held_back();

  // --- sleeping and waking ---
  // Before the owner sleeps in submit_and_collect(true): a read of the
  // eventfd, which wake() completes, and a poll of `fd` (another ring whose
  // completions the owner reaps, or -1).
  void arm_wake();
  void arm_poll(int fd);
  // Ends the owner's sleep, or its next one. Any thread, even a fiber's:
  // a raw system call, never an intercepted libc function.
  void wake();

  // Counters, written by the owning thread only (bump); read anywhere.
  std::atomic<uint64_t> enters{0};     // io_uring_enter calls
  std::atomic<uint64_t> submitted{0};  // SQEs handed to the kernel
  // epoll_ctl calls (the epoll backend; 0 on io_uring). Any thread.
  uint64_t fd_registrations() const { return epoll_ ? epoll_->registrations() : 0; }

  unsigned setup_flags() const { return epoll_ ? 0 : ring_.setup_flags(); }

  // Tests: the next `times` submits (get_sqe, reserve_sqes) and enters
  // (submit_and_collect) fail with -err instead of reaching the kernel.
  void inject_failure_for_testing(int err, int times) {
    injected_err_ = err;
    injected_times_ = times;
  }

 private:
  void submit_for_room();
  io_uring_sqe* try_get_sqe() { return epoll_ ? epoll_->try_get_sqe() : ring_.try_get_sqe(); }
  unsigned sq_space_left() { return epoll_ ? epoll_->sq_space_left() : ring_.sq_space_left(); }
  // The injected failure, if one is left; else 0.
  int take_injected() {
    if (__builtin_expect(injected_times_ == 0, 1)) return 0;
    injected_times_--;
    return -injected_err_;
  }

  ring ring_;
  std::unique_ptr<epoll_backend> epoll_;  // set: the epoll backend, and ring_ is unused
  reap_fn reap_ = nullptr;
  void* owner_ = nullptr;
  int wake_fd_ = -1;
  uint64_t wake_buf_ = 0;
  bool wake_armed_ = false;
  bool poll_armed_ = false;
  int injected_err_ = 0;
  int injected_times_ = 0;
};

}  // namespace bobbin::internal

#endif  // BOBBIN_RUNTIME_IO_REACTOR_H_
