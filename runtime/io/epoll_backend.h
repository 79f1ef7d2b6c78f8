// Not part of the bobbin API.
//
// The reactor's second backend (reactor.h): epoll, for where io_uring is
// refused (a container's seccomp profile, gVisor, the sysctl; README "Where
// io_uring is refused"). It takes the same operations, described the same
// way -- an io_uring_sqe that liburing's io_uring_prep_* filled -- and
// answers with the same completions (user_data, result, flags), so that the
// code that waits (io_wait.h, park.cc, intercept/, file.cc, net/) and the
// cancellation protocol (fiber/cancel.h) are one for both backends. The SQE
// is only the description of an operation here: nothing reaches io_uring.
// What becomes of each operation:
//   - on sockets, pipes and other files epoll can watch (recv, send,
//     recvmsg, sendmsg, accept, connect, read, write, readv, writev,
//     poll_add): tried at once without blocking (MSG_DONTWAIT, or O_NONBLOCK
//     set for the attempt on a blocking fd); on EAGAIN (EINPROGRESS for a
//     connect) it waits for readiness through a registration of its fd on
//     this carrier's epoll instance, and is tried again when the fd is ready
//     (Go's netpoller and the JDK's do the same). How the fd is registered
//     depends on who closes it (see "Registrations" below);
//   - on regular files and block devices (read, write, readv, writev,
//     fsync), openat and openat2, and on any fd epoll refuses: a blocking
//     system call on one of this backend's worker threads (what io_uring's
//     io-wq, Go and the JDK do with files), whose result comes back through
//     the owner's wake-up eventfd;
//   - timeouts, link timeouts (an operation's deadline) and their removal:
//     a map ordered by CLOCK_MONOTONIC time, whose first entry bounds the
//     epoll_pwait2 sleep (a REALTIME or BOOTTIME deadline is converted when
//     it is armed);
//   - cancellation, by user_data or of every operation on an fd: an
//     operation waiting for readiness, a timer or a queued job completes
//     with -ECANCELED at once; a job already running on a worker cannot be
//     interrupted (-EALREADY), as io_uring cannot interrupt a regular-file
//     read either;
//   - anything else completes with -EINVAL.
// Registrations. epoll keys a registration by the open file and the fd
// number, and drops it when the file's last fd closes; a number closed and
// reused behind this side's back would leave it watching nothing (a hang)
// or a file that lives on through a dup (stray events).
//   - An fd a bobbin object owns (tcp_stream, tcp_listener: io_object marks
//     its operations with owned_by(), a key unique to the object) is
//     registered once on each carrier it waits on, edge-triggered, and
//     stays registered while waits come and go: a wait on it costs no
//     epoll_ctl, as in Go's netpoller, Asio and the JDK. That is safe
//     because the object closes the fd itself, and a new owner of the
//     number has a new key: the key is in each registration's event data,
//     events under a key this side has replaced are ignored, and a new key
//     registers afresh. Every wait tries the operation before it waits, so
//     an edge that came before the wait is never needed. A carrier woken
//     by such an fd 4 times with no wait for it between (its fiber moved to
//     another carrier) takes it off its set, so that a busy fd does not
//     keep waking every carrier it ever waited on.
//   - Any other fd (a libc call interposed on a user's fd, which bobbin
//     cannot see closed): EPOLLONESHOT, armed by an epoll_ctl for each wait,
//     which finds a closed and reused number afresh (ENOENT, then ADD).
// The system calls are raw (bobbin's own interceptors must not see them).
// Used by its owner's thread only, except that workers hand results back
// under jobs_mu_.
#ifndef BOBBIN_RUNTIME_IO_EPOLL_BACKEND_H_
#define BOBBIN_RUNTIME_IO_EPOLL_BACKEND_H_

#include <liburing.h>
#include <sys/epoll.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/inlined_vector.h"
#include "absl/status/status.h"

namespace bobbin::internal {

class epoll_backend {
 public:
  struct cqe {
    uint64_t user_data;
    int32_t res;
    uint32_t flags;
  };

  epoll_backend() = default;
  epoll_backend(const epoll_backend&) = delete;
  epoll_backend& operator=(const epoll_backend&) = delete;
  // Waits for jobs running on workers to return (their results are
  // dropped: at shutdown their fibers are abandoned).
  ~epoll_backend();

  // `wake_fd`: the owner's eventfd (non-blocking), watched for ever; a
  // write to it ends a sleeping collect(). At most `max_workers` threads
  // for blocking jobs, started when first needed.
  absl::Status init(unsigned entries, int wake_fd, unsigned max_workers);

  // A free SQE slot, or null when every slot holds a prepared operation
  // (submit() empties them all).
  io_uring_sqe* try_get_sqe() {
    if (sq_used_ == sq_.size()) return nullptr;
    io_uring_sqe* sqe = &sq_[sq_used_++];
    return sqe;
  }
  unsigned sq_space_left() const { return static_cast<unsigned>(sq_.size()) - sq_used_; }
  unsigned pending_sqes() const { return sq_used_; }

  // Starts every prepared operation, in order. Never refuses.
  void submit();
  // submit(), then gathers what is done: ready fds (one epoll_pwait2),
  // fired timers, finished jobs. With `wait`, sleeps until something is
  // done (or the eventfd is written) when nothing is yet. Returns how many
  // epoll waits it made (0 or 1).
  unsigned collect(bool wait);
  // Completions ready to reap, or jobs whose results wait to be taken.
  bool has_completions() const {
    return !cq_.empty() || jobs_finished_.load(std::memory_order_acquire);
  }
  // Whether collect(false) has anything to do without a system call.
  bool needs_enter() const { return sq_used_ != 0 || jobs_finished_.load(std::memory_order_acquire); }

  // Runs `fn(const cqe&)` for every completion, in order; returns how many.
  template <class Fn>
  unsigned reap(Fn&& fn) {
    take_finished_jobs();
    unsigned n = 0;
    // fn may submit (a completion's fn readies a fiber, never prepares an
    // operation itself), but take the batch first to keep the order.
    while (reaped_upto_ < cq_.size()) {
      const cqe c = cq_[reaped_upto_++];
      fn(c);
      n++;
    }
    cq_.clear();
    reaped_upto_ = 0;
    return n;
  }

  // Marks `sqe` (prepared for a socket operation) as one on an fd the
  // object `key` owns and closes itself (see "Registrations"). `key`: from
  // new_owner_key(). Uses a field that no operation this backend takes
  // reads (liburing's prep functions zero it); only for the epoll backend:
  // io_uring would refuse it.
  static void owned_by(io_uring_sqe* sqe, uint32_t key) { sqe->addr3 = key; }
  // A key for a new owning object: unique until 2^32 objects later, never
  // 0 (not owned) or all ones (the wake-up eventfd's).
  static uint32_t new_owner_key();
  // The owner of `fd` is about to close it: takes it off the epoll set
  // `epfd` (a carrier's, epoll_fd()), from any thread. Without this, a file
  // that outlives the close (a dup, a fork, a socket passed to another
  // process) would stay registered, edge-triggered, and wake the carrier
  // for as long as it is used elsewhere. This side's record of the fd is
  // left as it is: the number's next owner has another key, and registers
  // afresh. Not counted in registrations() (another thread's call).
  static void forget(int epfd, int fd);
  int epoll_fd() const { return epfd_; }

  // closed_fds.h: `fd` was closed (the close() interceptor, any thread):
  // the waits on it by intercepted calls that recorded a close count older
  // than `close_count` end at this backend's next collect, with EBADF (a
  // poll with POLLNVAL). Wakes the carrier.
  void note_closed(int fd, uint32_t close_count);

  // For tests and stats.
  size_t operations_waiting() const { return ops_; }
  // Operations waiting for an fd's readiness. While there are none, a
  // collect() that may not sleep makes no epoll wait.
  size_t fd_waits() const { return fd_waits_; }
  // epoll_ctl calls made to register, re-arm or remove fds. Any thread.
  uint64_t registrations() const { return registrations_.load(std::memory_order_relaxed); }

 private:
  struct timer;
  enum class place : uint8_t { fd_wait, job_queued, job_running, timer_only };
  enum class fd_kind : uint8_t { socket, other_pollable, blocking_file };
  struct op {
    io_uring_sqe sqe;  // a copy: the slot is reused at once
    uint64_t user_data = 0;
    int fd = -1;
    uint32_t events = 0;  // what it waits for while in fd_wait
    uint32_t owner = 0;   // owned_by()'s key, 0 if the fd is not owned
    // Where it waits: timer_only (on no list; at most its deadline's timer
    // refers to it) until wait_for_fd() or run_on_worker(). Written by a
    // worker (queued -> running) under jobs_mu_; whether a job can still be
    // taken back is decided under it too (take_back_job).
    std::atomic<place> at{place::timer_only};
    fd_kind kind = fd_kind::socket;
    bool connecting = false;         // a connect that answered EINPROGRESS
    bool user_fd_wait = false;       // in fd_wait on a user's fd, counted in closed_fds
    uint32_t close_count = 0;        // closed_fds::wait_begins()'s, when user_fd_wait
    timer* deadline = nullptr;       // its link timeout, if any
    uint64_t link_user_data = 0;     // the link timeout's user_data
    op* same_user_data = nullptr;    // the next older one indexed under its user_data
  };
  // One waiter is the common case (a read or a write per fd): inline.
  using op_list = absl::InlinedVector<op*, 1>;
  struct timer {
    int64_t when_ns = 0;
    uint64_t user_data = 0;  // a TIMEOUT's; unused for a link timeout
    op* linked = nullptr;    // a link timeout: the operation it bounds
    std::multimap<int64_t, timer*>::iterator at;
  };
  struct fd_entry {
    op_list waiting;
    // Events armed: for EPOLLONESHOT, until reported; edge-triggered, for
    // as long as the registration lasts.
    uint32_t armed = 0;
    uint32_t owner = 0;       // the registration's key (0: one-shot)
    bool registered = false;  // on the epoll set as far as this side knows
    // Edge-triggered: reports that woke this carrier with nobody waiting,
    // since the last wait began (kIdleWakeupsBeforeRemoval, and the
    // registration is removed).
    uint8_t idle_events = 0;
  };

  void start(const io_uring_sqe& sqe, const io_uring_sqe* link);
  op* new_op(const io_uring_sqe& sqe);
  // Tries `o` without blocking: its result, or -EAGAIN to wait.
  int attempt(op* o);
  void wait_for_fd(op* o);
  // `o` is off its fd's waiting list (to finish, or to run as a job).
  void left_fd_wait(op* o);
  // The operation's deadline, from the LINK_TIMEOUT that followed it (none: null).
  void arm_deadline(op* o, const io_uring_sqe* link);
  // Registers or re-arms `fd` for what its waiting operations want, under
  // `owner` (0: one-shot).
  void arm_fd(int fd, fd_entry& e, uint32_t owner);
  // `idle_carrier`: reported by a wait that could sleep (nothing to run).
  void fd_ready(int fd, uint32_t owner, uint32_t events, bool idle_carrier);
  void run_on_worker(op* o);
  void worker_main();
  // Takes what other threads handed over: finished jobs, closed fds.
  void take_finished_jobs();
  void end_waits_on_closed_fd(int fd, uint32_t close_count);
  // Completes `o` with `res` (and its link timeout with `link_res`), from
  // wherever it waits, and frees it.
  void finish(op* o, int res, int link_res = -ECANCELED);
  void detach(op* o);
  // A queued job off the queue, so that it never runs: false if a worker
  // has taken it (it runs to the end; its result comes through finished_).
  bool take_back_job(op* o);
  // ops_by_user_data_'s upkeep.
  void index_op(op* o);
  void unindex_op(op* o);
  void add_timer(timer* t);
  void fire_due_timers();
  int cancel_matching(uint64_t user_data, int fd, bool by_fd, bool all);
  int remove_timeout(uint64_t user_data);
  void post(uint64_t user_data, int res) {
    if (user_data != 0) cq_.push_back({user_data, res, 0});
  }

  std::vector<io_uring_sqe> sq_;
  std::vector<io_uring_sqe> batch_;  // submit()'s copy of the prepared slots
  unsigned sq_used_ = 0;
  std::vector<cqe> cq_;
  size_t reaped_upto_ = 0;
  int epfd_ = -1;
  int wake_fd_ = -1;
  bool pwait2_ = true;  // epoll_pwait2 works here (else epoll_pwait, ms)
  std::vector<epoll_event> events_;
  std::atomic<uint64_t> registrations_{0};  // written by the owner only (bump)
  absl::flat_hash_map<int, fd_entry> fds_;
  size_t fd_waits_ = 0;  // operations in fd_wait
  // Every operation, by user_data: the newest of each user_data here, older
  // ones with the same user_data (a poll() of several fds shares one)
  // chained through op::same_user_data. Flat, and no allocation per
  // operation (a node-based multimap cost one, and a cache miss, per send).
  absl::flat_hash_map<uint64_t, op*> ops_by_user_data_;
  size_t ops_ = 0;
  std::multimap<int64_t, timer*> timers_;
  std::unordered_multimap<uint64_t, timer*> timeouts_by_user_data_;

  // Blocking jobs.
  unsigned max_workers_ = 4;
  std::mutex jobs_mu_;
  std::condition_variable jobs_cv_;
  std::deque<op*> jobs_;
  std::vector<std::pair<op*, int>> finished_;  // under jobs_mu_
  std::vector<std::pair<int, uint32_t>> closed_;  // note_closed()'s, under jobs_mu_
  std::atomic<bool> jobs_finished_{false};  // finished_ or closed_ not empty
  unsigned idle_workers_ = 0;                  // under jobs_mu_
  bool stopping_ = false;                      // under jobs_mu_
  std::vector<std::thread> workers_;
};

}  // namespace bobbin::internal

#endif  // BOBBIN_RUNTIME_IO_EPOLL_BACKEND_H_
