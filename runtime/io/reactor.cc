#include "runtime/io/reactor.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>

#include "absl/strings/str_cat.h"
#include "runtime/intercept/libc.h"
#include "runtime/util/check.h"

namespace bobbin::internal {

namespace {

// How get_sqe() and reserve_sqes() retry while the kernel answers EBUSY (its
// CQ overflowed) or EAGAIN (it could not allocate requests). Each reap
// empties the CQ, so one retry normally succeeds. After kRetriesBeforeNaps
// in a row they nap 1 ms between tries (a memory squeeze passes in
// milliseconds), and after kMaxNaps naps they give up: a kernel that has not
// taken the submission in a second will not.
constexpr int kRetriesBeforeNaps = 100;
constexpr int kMaxNaps = 1000;

// The outcome of a submit or enter the loop cannot go on after.
// Formats on the stack: the caller may be inside an interceptor, where
// allocating could re-enter the code that failed.
[[noreturn]] void submit_failed(const char* call, int err) {
  char message[160];
  std::snprintf(message, sizeof message, "bobbin: %s failed unexpectedly: %s (errno %d)", call, std::strerror(-err),
                -err);
  fatal(message);
}

}  // namespace

reactor::~reactor() {
  epoll_.reset();  // its workers write the eventfd until they are joined
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

absl::Status reactor::init(unsigned entries, reap_fn reap, void* owner, io_worker_limits max_workers,
                           bool use_epoll) {
  reap_ = reap;
  owner_ = owner;
  if (use_epoll) {
    // Non-blocking: the epoll backend reads it only when told it is ready,
    // but two reads may race for one readiness.
    wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (wake_fd_ < 0) return absl::ResourceExhaustedError(absl::StrCat("bobbin: eventfd: ", std::strerror(errno)));
    epoll_ = std::make_unique<epoll_backend>();
    return epoll_->init(entries, wake_fd_, max_workers.bounded != 0 ? max_workers.bounded : 4);
  }
  if (absl::Status st = ring_.init(entries); !st.ok()) return st;
  if (max_workers.bounded != 0 || max_workers.unbounded != 0) {
    // The limit is the calling thread's (io-wq is per thread), so it covers
    // this carrier's futex ring too. A zero leaves that limit as it is.
    // Before 5.15 the kernel refuses the call (EINVAL) and keeps its own
    // limits: min(SQ entries, 4 per CPU) bounded, RLIMIT_NPROC unbounded.
    unsigned limits[2] = {max_workers.bounded, max_workers.unbounded};
    io_uring_register_iowq_max_workers(ring_.raw(), limits);
  }
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC);
  if (wake_fd_ < 0) return absl::ResourceExhaustedError(absl::StrCat("bobbin: eventfd: ", std::strerror(errno)));
  return absl::OkStatus();
}

void reactor::submit_for_room() {
  // Full: hand the batch to the kernel now. Completions it produces are
  // reaped by the loop later; on EBUSY (CQ overflow) or EAGAIN the owner
  // reaps here, which only makes fibers runnable.
  if (epoll_) {
    const unsigned pending = epoll_->pending_sqes();
    epoll_->submit();  // starts each; never refuses
    bump(submitted, pending);
    return;
  }
  for (int refused = 0;;) {
    const unsigned pending = ring_.pending_sqes();
    int r = take_injected();
    if (r == 0) r = io_uring_submit(ring_.raw());
    bump(enters);
    if (r >= 0) {
      bump(submitted, pending);
      return;
    }
    if (r == -EINTR) continue;  // a signal (a profiler's): not a refusal
    if ((r != -EBUSY && r != -EAGAIN) || refused == kRetriesBeforeNaps + kMaxNaps) {
      submit_failed("io_uring_submit", r);
    }
    if (++refused > kRetriesBeforeNaps) {
      // A raw system call: this may run on a fiber, inside an interceptor.
      timespec nap{0, 1000000};
      bobbin::internal::libc::syscall(SYS_nanosleep, &nap, nullptr);
    }
    reap_(owner_);
  }
}

io_uring_sqe* reactor::get_sqe() {
  for (;;) {
    if (io_uring_sqe* sqe = try_get_sqe()) return sqe;
    submit_for_room();
  }
}

void reactor::reserve_sqes(unsigned n) {
  while (sq_space_left() < n) submit_for_room();
}

void reactor::arm_timer(const __kernel_timespec& when, completion* fired) {
  io_uring_sqe* sqe = get_sqe();
  // liburing's prep takes a non-const pointer; the kernel only reads it.
  io_uring_prep_timeout(sqe, const_cast<__kernel_timespec*>(&when), 0, IORING_TIMEOUT_ABS);
  io_uring_sqe_set_data(sqe, fired);
}

bool reactor::try_cancel(uint64_t user_data) {
  io_uring_sqe* sqe = try_get_sqe();
  if (sqe == nullptr) return false;
  io_uring_prep_cancel64(sqe, user_data, IORING_ASYNC_CANCEL_ALL);
  io_uring_sqe_set_data64(sqe, 0);
  return true;
}

void reactor::cancel_fd(int fd, completion* done) {
  io_uring_sqe* sqe = get_sqe();
  io_uring_prep_cancel_fd(sqe, fd, IORING_ASYNC_CANCEL_ALL);
  io_uring_sqe_set_data(sqe, done);
}

void reactor::cancel(uint64_t user_data, completion* done) {
  io_uring_sqe* sqe = get_sqe();
  io_uring_prep_cancel64(sqe, user_data, IORING_ASYNC_CANCEL_ALL);
  io_uring_sqe_set_data(sqe, done);
}

void reactor::remove_timeout(uint64_t user_data, completion* done) {
  io_uring_sqe* sqe = get_sqe();
  io_uring_prep_timeout_remove(sqe, user_data, 0);
  io_uring_sqe_set_data(sqe, done);
}

void reactor::submit_and_collect(bool wait) {
  if (epoll_) {
    const unsigned pending = epoll_->pending_sqes();
    if (take_injected() != 0) return;  // the loop retries an enter that failed; so does this
    bump(enters, epoll_->collect(wait));
    bump(submitted, pending);
    return;
  }
  if (!wait && !ring_.needs_enter()) return;
  const unsigned pending = ring_.pending_sqes();
  int r = take_injected();
  if (r == 0) r = ring_.enter(wait);
  bump(enters);
  if (r >= 0) bump(submitted, pending);
  // EINTR (a signal, e.g. a profiler's) and EBUSY (CQ overflow: reaping
  // makes room) are retried on the next loop turn.
  if (r < 0 && r != -EINTR && r != -EBUSY && r != -EAGAIN && r != -ETIME) submit_failed("io_uring_enter", r);
}

unsigned reactor::reap() {
  if (epoll_) {
    return epoll_->reap([](const epoll_backend::cqe& e) {
      auto* c = reinterpret_cast<completion*>(e.user_data);
      c->fn(c, e.res, e.flags);
    });
  }
  const unsigned reaped = ring_.drain([this](io_uring_cqe* cqe) {
    const uint64_t ud = cqe->user_data;
    if (ud == 0) return;
    if (ud == kWakeUserData) {
      wake_armed_ = false;
      return;
    }
    if (ud == kFutexPollUserData) {
      poll_armed_ = false;
      return;
    }
    auto* c = reinterpret_cast<completion*>(ud);
    c->fn(c, cqe->res, cqe->flags);
  });
  ring_.reaped(reaped);
  return reaped;
}

bool reactor::collect_held_back() {
  if (epoll_) return false;  // nothing is held back: completions are made here
  io_uring_get_events(ring_.raw());
  return ring_.cq_ready();
}

void reactor::arm_wake() {
  if (wake_armed_ || epoll_) return;  // epoll watches the eventfd for ever
  io_uring_sqe* sqe = get_sqe();
  io_uring_prep_read(sqe, wake_fd_, &wake_buf_, sizeof wake_buf_, 0);
  io_uring_sqe_set_data64(sqe, kWakeUserData);
  wake_armed_ = true;
}

void reactor::arm_poll(int fd) {
  if (fd < 0 || poll_armed_ || epoll_) return;  // no futex ring beside epoll
  // One-shot: the kernel makes a poll on an io_uring's fd one-shot anyway
  // (a multishot one could recurse through the completion it reports).
  io_uring_sqe* sqe = get_sqe();
  io_uring_prep_poll_add(sqe, fd, POLLIN);
  io_uring_sqe_set_data64(sqe, kFutexPollUserData);
  poll_armed_ = true;
}

void reactor::wake() {
  uint64_t one = 1;
  // Only EAGAIN (counter saturated: a wake is pending anyway) can fail here.
  // The raw system call: a fiber calls this from ready(), and the libc
  // write() would be bobbin's own interceptor (runtime/intercept).
  [[maybe_unused]] long n = bobbin::internal::libc::syscall(SYS_write, wake_fd_, &one, sizeof one);
}

}  // namespace bobbin::internal
