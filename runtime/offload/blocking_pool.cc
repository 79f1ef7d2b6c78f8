#include "runtime/offload/blocking_pool.h"

#include <pthread.h>

#include <algorithm>
#include <chrono>

#include "bobbin/this_fiber.h"
#include "runtime/fiber/cancel.h"
#include "runtime/sched/carrier.h"
#include "runtime/sched/scheduler.h"
#include "runtime/util/check.h"

namespace bobbin::internal {

namespace {
constexpr auto kIdleExit = std::chrono::seconds(10);
}

std::unique_lock<std::mutex> blocking_pool::lock_from_caller() {
  std::unique_lock l(mu_, std::defer_lock);
  if (current_fiber_carrier() == nullptr) {
    l.lock();
    return l;
  }
  // A fiber must not wait for this lock in the kernel: pool threads take it
  // too, and one the OS preempts while holding it (64 of them on 2 cores)
  // would hold the carrier, and every fiber queued on it, for a time slice
  // or more. Spin briefly, then let the carrier run others between tries.
  for (int i = 0; !l.try_lock(); i++) {
    if (i < 32) __builtin_ia32_pause();
    else this_fiber::yield();
  }
  return l;
}

bool blocking_pool::submit(offload_task* t) {
  std::unique_lock l = lock_from_caller();
  if (stopping_) return false;
  t->next = nullptr;
  if (tail_) tail_->next = t; else head_ = t;
  tail_ = t;
  calls_.fetch_add(1, std::memory_order_relaxed);
  if (idle_ == 0 && threads_ < max_threads_) {
    threads_++;
    live_.emplace_back([this] { worker(); });
  } else {
    cv_.notify_one();
  }
  // Threads that left for idleness are joined here, off the hot path of
  // their own exit.
  std::vector<std::thread> done;
  done.swap(exited_);
  l.unlock();
  for (auto& th : done) th.join();
  return true;
}

bool blocking_pool::withdraw(offload_task* t) {
  std::unique_lock l = lock_from_caller();
  offload_task* prev = nullptr;
  for (offload_task* q = head_; q != nullptr; prev = q, q = q->next) {
    if (q != t) continue;
    if (prev) prev->next = t->next; else head_ = t->next;
    if (tail_ == t) tail_ = prev;
    return true;
  }
  return false;
}

void blocking_pool::complete(offload_task* t) {
  t->lock.lock();
  t->done = true;
  waiter* w = pop_and_claim(t->waiters);
  t->lock.unlock();
  // The caller may return (and free *t) once notified: nothing of t after.
  if (w != nullptr) notify(w);
}

void blocking_pool::worker() {
  // Not the name of the carrier that started it, which it inherits.
  pthread_setname_np(pthread_self(), "bobbin-pool");
  std::unique_lock l(mu_);
  for (;;) {
    while (head_ == nullptr && !stopping_) {
      idle_++;
      bool woke = cv_.wait_for(l, kIdleExit, [this] { return head_ != nullptr || stopping_; });
      idle_--;
      if (!woke) {
        // Idle for long enough: leave, and let the next submit join us.
        threads_--;
        auto me = std::find_if(live_.begin(), live_.end(),
                               [](const std::thread& th) { return th.get_id() == std::this_thread::get_id(); });
        if (me != live_.end()) {
          exited_.push_back(std::move(*me));
          live_.erase(me);
        }
        return;
      }
    }
    if (stopping_) return;
    offload_task* t = head_;
    head_ = t->next;
    if (!head_) tail_ = nullptr;
    l.unlock();
    t->run();
    complete(t);
    l.lock();
  }
}

void blocking_pool::shutdown() {
  std::vector<std::thread> all;
  {
    std::lock_guard l(mu_);
    if (stopping_ && live_.empty() && exited_.empty()) return;
    stopping_ = true;
    // Queued calls that never started are dropped: their callers are parked
    // fibers of a runtime that is going away. Plain threads waiting on one
    // are woken to run it themselves.
    for (offload_task* t = head_; t != nullptr;) {
      offload_task* next = t->next;
      t->lock.lock();
      waiter* w = t->waiters.front();
      // A fiber is left parked: it is abandoned with its runtime.
      const bool thread_waiter = w != nullptr && !w->token.is_fiber && w->claim();
      if (thread_waiter) {
        t->waiters.remove(w);
        w->aux = 1;  // "run it yourself"
      }
      t->lock.unlock();
      if (thread_waiter) notify(w);
      t = next;
    }
    head_ = tail_ = nullptr;
    all.swap(live_);
    for (auto& th : exited_) all.push_back(std::move(th));
    exited_.clear();
  }
  cv_.notify_all();
  for (auto& th : all) th.join();
}

unsigned blocking_pool::threads() const {
  std::lock_guard l(mu_);
  return threads_;
}

bool offload_and_wait(runtime_impl* rt, offload_task* t) {
  carrier* c = current_fiber_carrier();
  if (rt == nullptr) {
    if (c == nullptr) {
      t->run();  // a plain thread (or a pinned fiber) may block: run it here
      return true;
    }
    rt = c->rt();
  }
  if (c != nullptr && cancel_requested(c->current())) return false;
  blocking_pool& pool = rt->offload_pool();
  if (!pool.submit(t)) {
    t->run();  // the pool is shut down
    return true;
  }
  // Linked and parked under one hold of the task's lock: complete() cannot
  // wake this fiber before it is off its stack. A cancellation takes the
  // call back if no pool thread has started it; one that has started runs
  // with references into this stack, so the fiber then waits for it,
  // uninterrupted.
  for (bool cancellable = c != nullptr;; cancellable = false) {
    waiter w;
    w.prepare();
    t->lock.lock();
    if (t->done) {
      t->lock.unlock();
      return true;
    }
    t->waiters.push_back(&w);
    const wait_state s = park(w, t->lock, t->waiters, deadline::never(), wait_reason::offload, cancellable);
    if (s != wait_state::canceled) {
      if (w.aux == 1) t->run();  // dropped at shutdown; a plain thread runs it itself
      return true;
    }
    if (pool.withdraw(t)) return false;
  }
}

}  // namespace bobbin::internal
