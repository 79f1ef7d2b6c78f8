#include "runtime/io/epoll_backend.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <pthread.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "runtime/intercept/libc.h"
#include "runtime/io/closed_fds.h"
#include "runtime/util/counter.h"
#include "runtime/util/check.h"

namespace bobbin::internal {

namespace {

// The key of the wake-up eventfd in the epoll set (fds are keyed by number).
constexpr uint64_t kWakeKey = ~uint64_t{0};
constexpr int kMaxEvents = 256;
// An edge-triggered fd whose reports woke this carrier (or found it with
// nothing to run) this many times with nobody here waiting is taken off its
// set. Reports a busy carrier collects between fibers cost it nothing and
// are not counted: a saturated socket's reads find data without waiting,
// and counting every report without a waiter removed and registered again
// a socket every few hundred messages (2,299 epoll_ctl in 338,842 echo
// messages at 100 connections, against 101 registrations now).
constexpr uint8_t kIdleWakeupsBeforeRemoval = 4;

// A raw system call: its result, or -errno.
template <class... Args>
long sys(long number, Args... args) {
  const long r = libc::syscall(number, args...);
  return r < 0 ? -errno : r;
}

int64_t clock_ns(clockid_t clock) {
  timespec ts;
  clock_gettime(clock, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

// A TIMEOUT or LINK_TIMEOUT's expiry on CLOCK_MONOTONIC.
int64_t expiry_ns(const io_uring_sqe& sqe) {
  const auto* ts = reinterpret_cast<const __kernel_timespec*>(sqe.addr);
  const int64_t t = static_cast<int64_t>(ts->tv_sec) * 1000000000 + ts->tv_nsec;
  const int64_t now = clock_ns(CLOCK_MONOTONIC);
  if ((sqe.timeout_flags & IORING_TIMEOUT_ABS) == 0) return now + t;
  if (sqe.timeout_flags & IORING_TIMEOUT_REALTIME) return now + (t - clock_ns(CLOCK_REALTIME));
  if (sqe.timeout_flags & IORING_TIMEOUT_BOOTTIME) return now + (t - clock_ns(CLOCK_BOOTTIME));
  return t;
}

// Runs `attempt` with O_NONBLOCK set on `fd` if it was not (and puts the
// flags back): a blocking fd shared with code that expects it blocking.
template <class Fn>
int without_blocking(int fd, Fn&& attempt) {
  const long flags = sys(SYS_fcntl, fd, F_GETFL);
  if (flags < 0) return static_cast<int>(flags);
  if (flags & O_NONBLOCK) return attempt();
  sys(SYS_fcntl, fd, F_SETFL, flags | O_NONBLOCK);
  const int r = attempt();
  sys(SYS_fcntl, fd, F_SETFL, flags);
  return r;
}

bool is_socket_op(uint8_t opcode) {
  return opcode == IORING_OP_RECV || opcode == IORING_OP_SEND || opcode == IORING_OP_RECVMSG ||
         opcode == IORING_OP_SENDMSG || opcode == IORING_OP_ACCEPT || opcode == IORING_OP_CONNECT;
}

bool is_rw_op(uint8_t opcode) {
  return opcode == IORING_OP_READ || opcode == IORING_OP_WRITE || opcode == IORING_OP_READV ||
         opcode == IORING_OP_WRITEV;
}

uint32_t events_for(const io_uring_sqe& sqe) {
  switch (sqe.opcode) {
    case IORING_OP_RECV:
    case IORING_OP_RECVMSG:
    case IORING_OP_ACCEPT:
    case IORING_OP_READ:
    case IORING_OP_READV:
      return EPOLLIN | EPOLLRDHUP;
    case IORING_OP_POLL_ADD:
      return sqe.poll32_events;
    default:
      return EPOLLOUT;
  }
}

// The offset a READ/WRITE(V) names: -1 (all ones) is the file position.
bool uses_file_position(const io_uring_sqe& sqe) { return sqe.off == ~uint64_t{0}; }

// A blocking job: the operation's system call, as a thread would make it.
int run_blocking(const io_uring_sqe& sqe) {
  const int fd = sqe.fd;
  void* addr = reinterpret_cast<void*>(sqe.addr);
  const auto off = static_cast<long>(sqe.off);
  switch (sqe.opcode) {
    case IORING_OP_READ:
      return static_cast<int>(uses_file_position(sqe) ? sys(SYS_read, fd, addr, sqe.len)
                                                      : sys(SYS_pread64, fd, addr, sqe.len, off));
    case IORING_OP_WRITE:
      return static_cast<int>(uses_file_position(sqe) ? sys(SYS_write, fd, addr, sqe.len)
                                                      : sys(SYS_pwrite64, fd, addr, sqe.len, off));
    case IORING_OP_READV:
      return static_cast<int>(uses_file_position(sqe) ? sys(SYS_readv, fd, addr, sqe.len)
                                                      : sys(SYS_preadv, fd, addr, sqe.len, off, 0));
    case IORING_OP_WRITEV:
      return static_cast<int>(uses_file_position(sqe) ? sys(SYS_writev, fd, addr, sqe.len)
                                                      : sys(SYS_pwritev, fd, addr, sqe.len, off, 0));
    case IORING_OP_FSYNC:
      return static_cast<int>((sqe.fsync_flags & IORING_FSYNC_DATASYNC) ? sys(SYS_fdatasync, fd)
                                                                        : sys(SYS_fsync, fd));
    case IORING_OP_OPENAT:
      return static_cast<int>(sys(SYS_openat, fd, addr, static_cast<long>(sqe.open_flags), static_cast<long>(sqe.len)));
    case IORING_OP_OPENAT2:
      return static_cast<int>(sys(SYS_openat2, fd, addr, reinterpret_cast<void*>(sqe.off), static_cast<long>(sqe.len)));
    // Socket operations land here only when epoll refused their fd.
    case IORING_OP_RECV:
      return static_cast<int>(sys(SYS_recvfrom, fd, addr, sqe.len, static_cast<long>(sqe.msg_flags), nullptr, nullptr));
    case IORING_OP_SEND:
      return static_cast<int>(sys(SYS_sendto, fd, addr, sqe.len, static_cast<long>(sqe.msg_flags), nullptr, 0));
    case IORING_OP_RECVMSG:
      return static_cast<int>(sys(SYS_recvmsg, fd, addr, static_cast<long>(sqe.msg_flags)));
    case IORING_OP_SENDMSG:
      return static_cast<int>(sys(SYS_sendmsg, fd, addr, static_cast<long>(sqe.msg_flags)));
    default:
      return -EINVAL;
  }
}

// A READ/WRITE(V) on a pipe, a terminal or another file without a position
// (io_uring ignores the offset there too).
int run_streaming(const io_uring_sqe& sqe) {
  void* addr = reinterpret_cast<void*>(sqe.addr);
  switch (sqe.opcode) {
    case IORING_OP_READ:
      return static_cast<int>(sys(SYS_read, sqe.fd, addr, sqe.len));
    case IORING_OP_WRITE:
      return static_cast<int>(sys(SYS_write, sqe.fd, addr, sqe.len));
    case IORING_OP_READV:
      return static_cast<int>(sys(SYS_readv, sqe.fd, addr, sqe.len));
    case IORING_OP_WRITEV:
      return static_cast<int>(sys(SYS_writev, sqe.fd, addr, sqe.len));
    default:
      return -EINVAL;
  }
}

}  // namespace

epoll_backend::~epoll_backend() {
  if (epfd_ >= 0) closed_fds::remove_backend(this);
  {
    std::lock_guard<std::mutex> l(jobs_mu_);
    stopping_ = true;
  }
  jobs_cv_.notify_all();
  for (std::thread& t : workers_) t.join();
  for (op* o : jobs_) delete o;
  for (auto& [o, res] : finished_) delete o;
  for (auto& [ud, newest] : ops_by_user_data_) {
    for (op *o = newest, *next; o != nullptr; o = next) {
      next = o->same_user_data;
      const place at = o->at.load(std::memory_order_relaxed);
      if (o->user_fd_wait) closed_fds::wait_ends(o->fd);
      if (at != place::job_queued && at != place::job_running) delete o;
    }
  }
  for (auto& [when, t] : timers_) delete t;
  if (epfd_ >= 0) sys(SYS_close, epfd_);
}

absl::Status epoll_backend::init(unsigned entries, int wake_fd, unsigned max_workers) {
  // A full SQ is submitted (submit() never refuses), so it only batches the
  // operations prepared between two collects; 256 is plenty and keeps the
  // carrier's start cheap (4096 slots were 256 KiB per carrier).
  sq_.resize(std::min(entries, 256u));
  batch_.reserve(sq_.size());
  cq_.reserve(512);
  events_.resize(kMaxEvents);
  max_workers_ = std::max(1u, max_workers);
  wake_fd_ = wake_fd;
  const long fd = sys(SYS_epoll_create1, EPOLL_CLOEXEC);
  if (fd < 0) return absl::UnavailableError(absl::StrCat("bobbin: epoll_create1: ", std::strerror(static_cast<int>(-fd))));
  epfd_ = static_cast<int>(fd);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kWakeKey;
  if (long r = sys(SYS_epoll_ctl, epfd_, EPOLL_CTL_ADD, wake_fd_, &ev); r < 0) {
    return absl::UnavailableError(absl::StrCat("bobbin: epoll_ctl(eventfd): ", std::strerror(static_cast<int>(-r))));
  }
  closed_fds::add_backend(this);
  return absl::OkStatus();
}

void epoll_backend::submit() {
  // Operations may be prepared while this runs (a completion's fn cancels):
  // take the batch first.
  const unsigned n = sq_used_;
  if (n == 0) return;
  std::vector<io_uring_sqe>& batch = batch_;  // never re-entered: start() runs no completion
  batch.assign(sq_.begin(), sq_.begin() + n);
  sq_used_ = 0;
  for (unsigned i = 0; i < n; i++) {
    const io_uring_sqe& sqe = batch[i];
    const io_uring_sqe* link = nullptr;
    if ((sqe.flags & IOSQE_IO_LINK) && i + 1 < n && batch[i + 1].opcode == IORING_OP_LINK_TIMEOUT) {
      link = &batch[++i];
    }
    start(sqe, link);
  }
}

epoll_backend::op* epoll_backend::new_op(const io_uring_sqe& sqe) {
  op* o = new op;
  o->sqe = sqe;
  o->user_data = sqe.user_data;
  o->fd = sqe.fd;
  if (is_socket_op(sqe.opcode) || is_rw_op(sqe.opcode) || sqe.opcode == IORING_OP_POLL_ADD) {
    o->owner = static_cast<uint32_t>(sqe.addr3);  // owned_by()'s mark
  }
  return o;
}

void epoll_backend::forget(int epfd, int fd) {
  // ENOENT: this carrier never registered it, or dropped it (idle).
  sys(SYS_epoll_ctl, epfd, EPOLL_CTL_DEL, fd, nullptr);
}

uint32_t epoll_backend::new_owner_key() {
  static std::atomic<uint32_t> next{1};
  for (;;) {
    const uint32_t key = next.fetch_add(1, std::memory_order_relaxed);
    if (key != 0 && key != ~uint32_t{0}) return key;
  }
}

void epoll_backend::start(const io_uring_sqe& sqe, const io_uring_sqe* link) {
  switch (sqe.opcode) {
    case IORING_OP_NOP:
      post(sqe.user_data, 0);
      return;
    case IORING_OP_TIMEOUT: {
      auto* t = new timer;
      t->when_ns = expiry_ns(sqe);
      t->user_data = sqe.user_data;
      add_timer(t);
      timeouts_by_user_data_.emplace(t->user_data, t);
      return;
    }
    case IORING_OP_TIMEOUT_REMOVE:
      post(sqe.user_data, remove_timeout(sqe.addr));
      return;
    case IORING_OP_ASYNC_CANCEL: {
      const bool by_fd = (sqe.cancel_flags & IORING_ASYNC_CANCEL_FD) != 0;
      const bool all = (sqe.cancel_flags & (IORING_ASYNC_CANCEL_ALL | IORING_ASYNC_CANCEL_ANY)) != 0;
      post(sqe.user_data, cancel_matching(sqe.addr, sqe.fd, by_fd, all));
      return;
    }
    case IORING_OP_LINK_TIMEOUT:
      // Not after a linked operation: nothing to bound.
      post(sqe.user_data, -EINVAL);
      return;
    default:
      break;
  }
  const bool known = is_socket_op(sqe.opcode) || is_rw_op(sqe.opcode) || sqe.opcode == IORING_OP_POLL_ADD ||
                     sqe.opcode == IORING_OP_FSYNC || sqe.opcode == IORING_OP_OPENAT ||
                     sqe.opcode == IORING_OP_OPENAT2;
  if (!known) {
    post(sqe.user_data, -EINVAL);
    if (link != nullptr) post(link->user_data, -ECANCELED);
    return;
  }
  op* o = new_op(sqe);
  if (link != nullptr) o->link_user_data = link->user_data;
  if (sqe.opcode == IORING_OP_FSYNC || sqe.opcode == IORING_OP_OPENAT || sqe.opcode == IORING_OP_OPENAT2) {
    o->kind = fd_kind::blocking_file;
  } else if (is_rw_op(sqe.opcode)) {
    struct stat st;
    const long r = sys(SYS_fstat, o->fd, &st);
    if (r < 0) {
      o->kind = fd_kind::other_pollable;  // the attempt reports the error
    } else if (S_ISSOCK(st.st_mode)) {
      o->kind = fd_kind::socket;
    } else if (S_ISREG(st.st_mode) || S_ISBLK(st.st_mode) || S_ISDIR(st.st_mode)) {
      o->kind = fd_kind::blocking_file;
    } else {
      o->kind = fd_kind::other_pollable;
    }
  }
  index_op(o);
  if (o->kind == fd_kind::blocking_file) {
    arm_deadline(o, link);
    run_on_worker(o);
    return;
  }
  const int res = attempt(o);
  if (res != -EAGAIN) {
    finish(o, res);
    return;
  }
  arm_deadline(o, link);
  wait_for_fd(o);
}

void epoll_backend::arm_deadline(op* o, const io_uring_sqe* link) {
  if (link == nullptr) return;
  o->deadline = new timer;
  o->deadline->when_ns = expiry_ns(*link);
  o->deadline->linked = o;
  add_timer(o->deadline);
}

int epoll_backend::attempt(op* o) {
  const io_uring_sqe& sqe = o->sqe;
  const int fd = o->fd;
  void* addr = reinterpret_cast<void*>(sqe.addr);
  const long dontwait = MSG_DONTWAIT;
  long r = -EINVAL;
  switch (sqe.opcode) {
    case IORING_OP_RECV:
      r = sys(SYS_recvfrom, fd, addr, sqe.len, static_cast<long>(sqe.msg_flags) | dontwait, nullptr, nullptr);
      break;
    case IORING_OP_SEND:
      r = sys(SYS_sendto, fd, addr, sqe.len, static_cast<long>(sqe.msg_flags) | dontwait, nullptr, 0);
      break;
    case IORING_OP_RECVMSG:
      r = sys(SYS_recvmsg, fd, addr, static_cast<long>(sqe.msg_flags) | dontwait);
      break;
    case IORING_OP_SENDMSG:
      r = sys(SYS_sendmsg, fd, addr, static_cast<long>(sqe.msg_flags) | dontwait);
      break;
    case IORING_OP_ACCEPT:
      r = without_blocking(fd, [&] {
        return static_cast<int>(sys(SYS_accept4, fd, addr, reinterpret_cast<void*>(sqe.off),
                                    static_cast<long>(sqe.accept_flags)));
      });
      break;
    case IORING_OP_CONNECT:
      if (o->connecting) {
        // Ready for writing: the connect has ended; SO_ERROR says how.
        int err = 0;
        socklen_t len = sizeof err;
        r = sys(SYS_getsockopt, fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (r == 0) r = -err;
        break;
      }
      r = without_blocking(fd, [&] {
        return static_cast<int>(sys(SYS_connect, fd, addr, static_cast<long>(sqe.off)));
      });
      if (r == -EINPROGRESS || r == -EALREADY) {
        o->connecting = true;
        r = -EAGAIN;
      }
      break;
    case IORING_OP_POLL_ADD: {
      pollfd p{fd, static_cast<short>(sqe.poll32_events), 0};
      timespec zero{0, 0};
      r = sys(SYS_ppoll, &p, 1, &zero, nullptr, 0);
      if (r > 0) r = p.revents;
      else if (r == 0) r = -EAGAIN;
      break;
    }
    case IORING_OP_READ:
    case IORING_OP_READV:
    case IORING_OP_WRITE:
    case IORING_OP_WRITEV:
      if (o->kind == fd_kind::socket) {
        if (sqe.opcode == IORING_OP_READ) {
          r = sys(SYS_recvfrom, fd, addr, sqe.len, dontwait, nullptr, nullptr);
        } else if (sqe.opcode == IORING_OP_WRITE) {
          r = sys(SYS_sendto, fd, addr, sqe.len, dontwait, nullptr, 0);
        } else {
          msghdr m{};
          m.msg_iov = static_cast<iovec*>(addr);
          m.msg_iovlen = sqe.len;
          r = sqe.opcode == IORING_OP_READV ? sys(SYS_recvmsg, fd, &m, dontwait)
                                            : sys(SYS_sendmsg, fd, &m, dontwait);
        }
        // A write to a socket the peer closed: EPIPE and SIGPIPE, as from
        // write(2) and from io_uring's IORING_OP_WRITE.
      } else {
        r = without_blocking(fd, [&] { return run_streaming(sqe); });
      }
      break;
    default:
      break;
  }
  if (r == -EWOULDBLOCK) r = -EAGAIN;
  return static_cast<int>(r);
}

void epoll_backend::wait_for_fd(op* o) {
  o->at = place::fd_wait;
  o->events = events_for(o->sqe);
  fd_entry& e = fds_[o->fd];
  e.waiting.push_back(o);
  e.idle_events = 0;
  fd_waits_++;
  if (o->owner == 0) {
    // A user's fd, which another thread may close behind this wait (closed_fds.h).
    o->user_fd_wait = true;
    o->close_count = closed_fds::wait_begins(o->fd);
  }
  arm_fd(o->fd, e, o->owner);
}

void epoll_backend::left_fd_wait(op* o) {
  fd_waits_--;
  if (o->user_fd_wait) {
    closed_fds::wait_ends(o->fd);
    o->user_fd_wait = false;
  }
}

void epoll_backend::arm_fd(int fd, fd_entry& e, uint32_t owner) {
  uint32_t want = 0;
  for (op* o : e.waiting) want |= o->events;
  if (want == 0) return;
  const bool same_registration = e.registered && e.owner == owner;
  // One-shot: armed and not yet reported. Edge-triggered: watched since
  // the owner's first wait here (the common case: no system call).
  if (same_registration && (e.armed & want) == want) return;
  // Edge-triggered, keep watching what was watched: a later wait for it is free.
  if (owner != 0 && same_registration) want |= e.armed;
  epoll_event ev{};
  ev.events = want | (owner != 0 ? EPOLLET : EPOLLONESHOT);
  ev.data.u64 = (uint64_t{owner} << 32) | static_cast<uint32_t>(fd);
  bump(registrations_);
  long r = sys(SYS_epoll_ctl, epfd_, e.registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &ev);
  // What this side believes may be stale: the fd may have been closed
  // (which takes it off the set) and its number reused, or registered by an
  // earlier wait this side forgot.
  if (r == -ENOENT || r == -EEXIST) {
    bump(registrations_);
    r = sys(SYS_epoll_ctl, epfd_, r == -ENOENT ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd, &ev);
  }
  if (r == 0) {
    e.registered = true;
    e.armed = want;
    e.owner = owner;
    return;
  }
  // epoll will not watch it: EPERM for a file that is always ready (a
  // regular file), EBADF or another error for a bad fd. Each waiting
  // operation runs as a blocking job, which reports any error itself.
  e.registered = false;
  e.armed = 0;
  op_list waiting;
  waiting.swap(e.waiting);
  fds_.erase(fd);
  for (op* o : waiting) {
    left_fd_wait(o);
    o->at = place::timer_only;  // off the list already
    if (r != -EPERM) {
      finish(o, static_cast<int>(r));
    } else {
      run_on_worker(o);
    }
  }
}

void epoll_backend::fd_ready(int fd, uint32_t owner, uint32_t events, bool idle_carrier) {
  auto it = fds_.find(fd);
  if (it == fds_.end()) return;  // nobody waits any more (cancelled)
  fd_entry& e = it->second;
  // A registration this side has since replaced under the same number: the
  // file an owner closed, alive through a dup elsewhere. Its events are not
  // this fd's (epoll reports the data a registration has now, so a
  // registration this side changed never reports under its old key).
  if (owner != e.owner) return;
  if (owner == 0) {
    e.armed = 0;  // one-shot: reported, so disarmed
  } else if (e.waiting.empty()) {
    // Edge-triggered, nobody here waits. Woken for it several times since
    // the last wait began: the fd is used elsewhere (its fiber moved to
    // another carrier); stop being woken for it. A later wait here
    // registers it again.
    if (idle_carrier && ++e.idle_events >= kIdleWakeupsBeforeRemoval) {
      bump(registrations_);
      forget(epfd_, fd);
      e.registered = false;
      e.armed = 0;
      e.owner = 0;
      e.idle_events = 0;
    }
    return;
  }
  // Try each operation the events could have unblocked; those still told
  // EAGAIN wait again. Taken out first: finish() edits the list.
  op_list waiting;
  waiting.swap(it->second.waiting);
  op_list still;
  for (op* o : waiting) {
    const bool maybe = (o->events & events) != 0 || (events & (EPOLLERR | EPOLLHUP)) != 0;
    int res = -EAGAIN;
    if (maybe) {
      if (o->sqe.opcode == IORING_OP_POLL_ADD) {
        // An edge may be older than the poll's own check (attempt()), and
        // what it reported consumed since: edge-triggered, check again.
        res = owner != 0 ? attempt(o) : static_cast<int>(events & (o->events | EPOLLERR | EPOLLHUP));
      } else {
        res = attempt(o);
      }
    }
    if (res == -EAGAIN) {
      still.push_back(o);
      continue;
    }
    left_fd_wait(o);
    o->at = place::timer_only;  // off the fd's list already
    finish(o, res);
  }
  auto again = fds_.find(fd);
  if (again == fds_.end()) return;
  for (op* o : still) again->second.waiting.push_back(o);
  if (again->second.waiting.empty()) return;  // stays registered (one-shot: disarmed)
  arm_fd(fd, again->second, again->second.owner);
}

void epoll_backend::run_on_worker(op* o) {
  o->at = place::job_queued;
  bool start_one = false;
  {
    std::lock_guard<std::mutex> l(jobs_mu_);
    jobs_.push_back(o);
    if (idle_workers_ == 0 && workers_.size() < max_workers_) start_one = true;
  }
  if (start_one) workers_.emplace_back([this] { worker_main(); });
  jobs_cv_.notify_one();
}

void epoll_backend::worker_main() {
  pthread_setname_np(pthread_self(), "bobbin-io");  // what top -H and gdb show
  std::unique_lock<std::mutex> l(jobs_mu_);
  for (;;) {
    idle_workers_++;
    jobs_cv_.wait(l, [this] { return stopping_ || !jobs_.empty(); });
    idle_workers_--;
    if (stopping_) return;
    op* o = jobs_.front();
    jobs_.pop_front();
    o->at = place::job_running;
    const io_uring_sqe sqe = o->sqe;
    l.unlock();
    const int res = run_blocking(sqe);
    l.lock();
    finished_.emplace_back(o, res);
    jobs_finished_.store(true, std::memory_order_release);
    uint64_t one = 1;
    sys(SYS_write, wake_fd_, &one, sizeof one);  // the owner may be asleep
  }
}

void epoll_backend::take_finished_jobs() {
  if (!jobs_finished_.load(std::memory_order_acquire)) return;
  std::vector<std::pair<op*, int>> done;
  std::vector<std::pair<int, uint32_t>> closed;
  {
    std::lock_guard<std::mutex> l(jobs_mu_);
    done.swap(finished_);
    closed.swap(closed_);
    jobs_finished_.store(false, std::memory_order_relaxed);
  }
  for (auto& [o, res] : done) {
    o->at = place::timer_only;  // off the queue already
    // A deadline that fired while the job ran could not stop it; the
    // result stands, as io_uring's when its cancel comes too late.
    finish(o, res);
  }
  for (auto [fd, close_count] : closed) end_waits_on_closed_fd(fd, close_count);
}

void epoll_backend::note_closed(int fd, uint32_t close_count) {
  {
    std::lock_guard<std::mutex> l(jobs_mu_);
    closed_.emplace_back(fd, close_count);
    jobs_finished_.store(true, std::memory_order_release);
  }
  const uint64_t one = 1;
  sys(SYS_write, wake_fd_, &one, sizeof one);
}

void epoll_backend::end_waits_on_closed_fd(int fd, uint32_t close_count) {
  auto it = fds_.find(fd);
  if (it == fds_.end()) return;
  std::vector<op*> ended;
  for (op* o : it->second.waiting) {
    if (o->user_fd_wait && closed_fds::ended_by(o->close_count, close_count)) ended.push_back(o);
  }
  for (op* o : ended) {
    // What the plain call answers for an fd that is not open.
    finish(o, o->sqe.opcode == IORING_OP_POLL_ADD ? POLLNVAL : -EBADF);
  }
  it = fds_.find(fd);
  if (it == fds_.end() || it->second.owner != 0) return;
  // What this side believes armed was the closed file's registration, gone
  // with it (or left with a dup of it: a report under this number then
  // wakes a wait that re-checks: a read tries again, poll() asks the
  // kernel, so the new file's state decides). Waits still here began after the
  // close, on the file the number names now (a fiber here may have closed
  // and reopened it before this ran): register that one.
  fd_entry& e = it->second;
  e.registered = false;
  e.armed = 0;
  if (!e.waiting.empty()) arm_fd(fd, e, 0);
}

bool epoll_backend::take_back_job(op* o) {
  std::lock_guard<std::mutex> l(jobs_mu_);
  if (o->at.load(std::memory_order_relaxed) != place::job_queued) return false;
  jobs_.erase(std::remove(jobs_.begin(), jobs_.end(), o), jobs_.end());
  o->at.store(place::timer_only, std::memory_order_relaxed);
  return true;
}

void epoll_backend::detach(op* o) {
  // Jobs reach finish() already off the queue (taken back, or finished).
  switch (o->at.load(std::memory_order_relaxed)) {
    case place::fd_wait: {
      auto it = fds_.find(o->fd);
      if (it != fds_.end()) {
        auto& w = it->second.waiting;
        w.erase(std::remove(w.begin(), w.end(), o), w.end());
        // Nobody waits: forget what is armed. The fd may be closed next
        // (which takes it off the epoll set) and its number reused, and a
        // stale "armed" would keep the next wait from registering it. An
        // owned fd's next owner has another key, which registers afresh.
        if (w.empty() && it->second.owner == 0) it->second.armed = 0;
      }
      left_fd_wait(o);
      break;
    }
    default:
      break;
  }
  o->at = place::timer_only;
}

void epoll_backend::finish(op* o, int res, int link_res) {
  detach(o);
  if (o->deadline != nullptr) {
    timers_.erase(o->deadline->at);
    delete o->deadline;
    o->deadline = nullptr;
    post(o->link_user_data, link_res);
  } else if (o->link_user_data != 0) {
    post(o->link_user_data, link_res);
  }
  unindex_op(o);
  post(o->user_data, res);
  delete o;
}

void epoll_backend::index_op(op* o) {
  auto [it, first] = ops_by_user_data_.try_emplace(o->user_data, o);
  if (!first) {
    o->same_user_data = it->second;
    it->second = o;
  }
  ops_++;
}

void epoll_backend::unindex_op(op* o) {
  auto it = ops_by_user_data_.find(o->user_data);
  if (it == ops_by_user_data_.end()) return;
  op** link = &it->second;
  while (*link != nullptr && *link != o) link = &(*link)->same_user_data;
  if (*link == nullptr) return;
  *link = o->same_user_data;
  if (it->second == nullptr) ops_by_user_data_.erase(it);
  ops_--;
}

void epoll_backend::add_timer(timer* t) { t->at = timers_.emplace(t->when_ns, t); }

void epoll_backend::fire_due_timers() {
  if (timers_.empty()) return;
  const int64_t now = clock_ns(CLOCK_MONOTONIC);
  while (!timers_.empty() && timers_.begin()->first <= now) {
    timer* t = timers_.begin()->second;
    timers_.erase(timers_.begin());
    if (op* o = t->linked) {
      // The operation's deadline: it ends with -ECANCELED and the link
      // timeout with -ETIME, as io_uring reports them. A running job
      // cannot be stopped; its result will stand.
      o->deadline = nullptr;
      delete t;
      const place at = o->at.load(std::memory_order_relaxed);
      if ((at == place::job_queued || at == place::job_running) && !take_back_job(o)) {
        post(o->link_user_data, -ETIME);
        o->link_user_data = 0;
        continue;
      }
      const uint64_t link_ud = o->link_user_data;
      o->link_user_data = 0;
      finish(o, -ECANCELED);
      post(link_ud, -ETIME);
      continue;
    }
    auto range = timeouts_by_user_data_.equal_range(t->user_data);
    for (auto it = range.first; it != range.second; ++it) {
      if (it->second == t) {
        timeouts_by_user_data_.erase(it);
        break;
      }
    }
    post(t->user_data, -ETIME);
    delete t;
  }
}

int epoll_backend::remove_timeout(uint64_t user_data) {
  auto it = timeouts_by_user_data_.find(user_data);
  if (it == timeouts_by_user_data_.end()) return -ENOENT;
  timer* t = it->second;
  timeouts_by_user_data_.erase(it);
  timers_.erase(t->at);
  post(t->user_data, -ECANCELED);
  delete t;
  return 0;
}

int epoll_backend::cancel_matching(uint64_t user_data, int fd, bool by_fd, bool all) {
  std::vector<op*> victims;
  bool running = false;
  if (by_fd) {
    for (auto& [ud, newest] : ops_by_user_data_) {
      for (op* o = newest; o != nullptr; o = o->same_user_data) {
        if (o->fd == fd) victims.push_back(o);
      }
    }
  } else if (auto it = ops_by_user_data_.find(user_data); it != ops_by_user_data_.end()) {
    for (op* o = it->second; o != nullptr; o = o->same_user_data) victims.push_back(o);
  }
  int cancelled = 0;
  for (op* o : victims) {
    if (!all && cancelled == 1) break;
    const place at = o->at.load(std::memory_order_relaxed);
    if ((at == place::job_queued || at == place::job_running) && !take_back_job(o)) {
      running = true;
      continue;
    }
    finish(o, -ECANCELED);
    cancelled++;
  }
  if (!by_fd && (all || (cancelled == 0 && !running))) {
    // io_uring's cancel finds timeouts too (a poll() of several fds arms
    // one timeout beside its polls, all under one user_data).
    auto range = timeouts_by_user_data_.equal_range(user_data);
    std::vector<timer*> timers;
    for (auto it = range.first; it != range.second; ++it) timers.push_back(it->second);
    for (timer* t : timers) {
      if (!all && cancelled == 1) break;
      remove_timeout(t->user_data);
      cancelled++;
    }
  }
  if (cancelled > 0) return all ? cancelled : 0;
  return running ? -EALREADY : -ENOENT;
}

unsigned epoll_backend::collect(bool wait) {
  submit();
  take_finished_jobs();
  fire_due_timers();
  const bool sleep = wait && cq_.empty();
  if (!sleep && fd_waits_ == 0) return 0;  // nothing an epoll wait could add without sleeping
  timespec timeout{0, 0};
  timespec* limit = &timeout;
  if (sleep) {
    if (timers_.empty()) {
      limit = nullptr;
    } else {
      const int64_t left = std::max<int64_t>(0, timers_.begin()->first - clock_ns(CLOCK_MONOTONIC));
      timeout.tv_sec = static_cast<time_t>(left / 1000000000);
      timeout.tv_nsec = static_cast<long>(left % 1000000000);
    }
  }
  long n;
  if (pwait2_) {
    n = sys(SYS_epoll_pwait2, epfd_, events_.data(), kMaxEvents, limit, nullptr, 0);
    if (n == -ENOSYS || n == -EPERM) pwait2_ = false;  // before 5.11, or a filter that predates it
  }
  if (!pwait2_) {
    long ms = -1;
    if (limit != nullptr) ms = (timeout.tv_sec * 1000) + (timeout.tv_nsec + 999999) / 1000000;
    n = sys(SYS_epoll_pwait, epfd_, events_.data(), kMaxEvents, std::min<long>(ms, INT_MAX), nullptr, 0);
  }
  if (n < 0) {
    BOBBIN_CHECK(n == -EINTR, "bobbin: epoll_pwait2 failed unexpectedly");
    n = 0;
  }
  for (long i = 0; i < n; i++) {
    const epoll_event& ev = events_[static_cast<size_t>(i)];
    if (ev.data.u64 == kWakeKey) {
      uint64_t value;
      sys(SYS_read, wake_fd_, &value, sizeof value);  // non-blocking: EAGAIN if another read took it
      continue;
    }
    fd_ready(static_cast<int>(static_cast<uint32_t>(ev.data.u64)), static_cast<uint32_t>(ev.data.u64 >> 32),
             ev.events, /*idle_carrier=*/sleep);
  }
  take_finished_jobs();
  fire_due_timers();
  return 1;
}

}  // namespace bobbin::internal
