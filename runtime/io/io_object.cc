#include "runtime/io/io_object.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <vector>

#include "runtime/io/epoll_backend.h"
#include "runtime/io/io_wait.h"
#include "runtime/sched/carrier.h"
#include "runtime/sched/scheduler.h"

namespace bobbin::internal {

io_object::io_object(int fd, bool is_socket)
    : fd_(fd), is_socket_(is_socket), epoll_owner_key_(is_socket ? epoll_backend::new_owner_key() : 0) {}

bool io_object::closed() const {
  lock_.lock();
  bool c = closed_;
  lock_.unlock();
  return c;
}

int io_object::begin(int carrier_index, runtime_impl* rt, bool even_if_closed, bool registers_on_epoll) {
  lock_.lock();
  if (closed_ && !even_if_closed) {
    lock_.unlock();
    return -ECANCELED;
  }
  if (rt != nullptr) rt_ = rt;
  if (registers_on_epoll &&
      std::find(epoll_carriers_.begin(), epoll_carriers_.end(), carrier_index) == epoll_carriers_.end()) {
    epoll_carriers_.push_back(carrier_index);
  }
  for (auto& [idx, n] : inflight_) {
    if (idx == carrier_index) {
      n++;
      lock_.unlock();
      return 0;
    }
  }
  inflight_.emplace_back(carrier_index, 1u);
  lock_.unlock();
  return 0;
}

void io_object::end(int carrier_index) {
  std::vector<waiter*> woken;
  lock_.lock();
  for (auto it = inflight_.begin(); it != inflight_.end(); ++it) {
    if (it->first == carrier_index) {
      if (--it->second == 0) inflight_.erase(it);
      break;
    }
  }
  if (inflight_.empty()) claim_all(closers_, 0, woken);
  lock_.unlock();
  notify_all(woken);
}

int io_object::run_on_fiber(carrier* c, void (*prep)(void*, io_uring_sqe*), void* prep_ctx, wait_reason reason,
                            deadline d) {
  const int index = static_cast<int>(c->index());
  const bool mark_owned = epoll_owner_key_ != 0 && c->io().on_epoll();
  if (int err = begin(index, c->rt(), /*even_if_closed=*/false, mark_owned)) return err;
  int res = await_sqe(
      c,
      [&](io_uring_sqe* sqe) {
        prep(prep_ctx, sqe);
        if (mark_owned) epoll_backend::owned_by(sqe, epoll_owner_key_);
      },
      reason, d);
  // Read before end(): once nothing is in flight, close() may return and the
  // owner delete this object.
  const bool was_closed = closed();
  end(index);  // the ring the operation ran on, not where we resumed
  if (res <= 0 && res != -ETIMEDOUT && was_closed) return -ECANCELED;
  return res;
}

int io_object::run_on_thread(int (*sys)(void*), void* sys_ctx, deadline d, short events, wait_reason reason) {
  if (int err = begin(-1, nullptr)) return err;
  pinned_block_marker marker(reason);
  int res;
  for (;;) {
    if (!d.is_never()) {
      res = poll_fd(fd_, events, d);
      if (res != 0) break;
    }
    res = sys(sys_ctx);
    if (res != -EINTR || closed()) break;
  }
  const bool was_closed = closed();  // before end(): see run_on_fiber
  end(-1);
  if (res <= 0 && res != -ETIMEDOUT && was_closed) return -ECANCELED;  // woken by close()'s shutdown
  return res;
}

struct cancel_done {
  completion c{&on_done};
  io_object* obj;
  int carrier_index;
  static void on_done(completion* c, int, uint32_t) {
    auto* self = reinterpret_cast<cancel_done*>(c);
    self->obj->end(self->carrier_index);
    delete self;
  }
};

void io_object::close() {
  lock_.lock();
  if (closed_) {
    lock_.unlock();
    return;
  }
  closed_ = true;
  std::vector<int> fiber_carriers;
  bool threads_blocked = false;
  for (auto& [idx, n] : inflight_) {
    if (idx >= 0) fiber_carriers.push_back(idx); else threads_blocked = true;
  }
  runtime_impl* rt = rt_;
  lock_.unlock();

  for (int idx : fiber_carriers) {
    if (rt == nullptr || rt->stopping() || static_cast<size_t>(idx) >= rt->carriers().size()) {
      // Its runtime is shutting down: no completion will come; forget them.
      lock_.lock();
      for (auto it = inflight_.begin(); it != inflight_.end(); ++it) {
        if (it->first == idx) {
          inflight_.erase(it);
          break;
        }
      }
      lock_.unlock();
      continue;
    }
    begin(idx, nullptr, /*even_if_closed=*/true);  // the cancel is in flight too
    auto* done = new cancel_done;
    done->obj = this;
    done->carrier_index = idx;
    rt->carriers()[idx]->post({remote_request::cancel_fd, fd_, 0, &done->c});
  }
  // Plain threads blocked in recv/accept on a socket wake up on shutdown.
  // Only then: a shutdown sends FIN, which would change what the peer sees
  // (an orderly end instead of, say, the RST of an SO_LINGER close).
  if (is_socket_ && threads_blocked) ::shutdown(fd_, SHUT_RDWR);

  lock_.lock();
  if (!inflight_.empty()) {
    waiter w;
    w.prepare();
    closers_.push_back(&w);
    park(w, lock_, closers_, deadline::never(), wait_reason::net_close, /*cancellable=*/false);
  } else {
    lock_.unlock();
  }
  if (!fd_released_ && fd_ >= 0) {
    // Nothing is in flight: no carrier will register the fd again. (A
    // runtime shutting down closes its epoll sets, which frees them.)
    if (rt != nullptr && !rt->stopping()) {
      for (int idx : epoll_carriers_) {
        if (static_cast<size_t>(idx) < rt->carriers().size()) {
          epoll_backend::forget(rt->carriers()[idx]->io().epoll_fd(), fd_);
        }
      }
    }
    ::close(fd_);
  }
  fd_ = -1;
}

int io_object::release_fd() {
  lock_.lock();
  int fd = fd_;
  fd_released_ = true;
  closed_ = true;
  fd_ = -1;
  lock_.unlock();
  return fd;
}

int poll_fd(int fd, short events, deadline d) {
  for (;;) {
    int timeout_ms = -1;
    if (!d.is_never()) {
      auto left = d.time() - std::chrono::steady_clock::now();
      if (left <= left.zero()) return -ETIMEDOUT;
      timeout_ms = static_cast<int>(std::chrono::ceil<std::chrono::milliseconds>(left).count());
    }
    pollfd p{fd, events, 0};
    int r = ::poll(&p, 1, timeout_ms);
    if (r > 0) return 0;
    if (r == 0) continue;  // re-checks the deadline
    if (errno != EINTR) return -errno;
  }
}

}  // namespace bobbin::internal
