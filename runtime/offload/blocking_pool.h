// Not part of the bobbin API.
//
// The blocking pool behind offload(): up to `max_threads` OS threads that
// run offloaded calls FIFO. Threads start on demand (when a call is queued
// and none is idle) and leave after 10 s without work, so an idle runtime
// holds none.
//
// It uses std::mutex and std::condition_variable rather than absl's: pool
// threads wait on the condition variable, and ThreadSanitizer can see
// through libstdc++'s (pthread) primitives but not through Debian's
// uninstrumented Abseil.
//
// Shutdown, in order: refuse new calls (they run inline on the caller),
// drop queued calls that have not started (their callers are fibers being
// abandoned with the runtime), wait for running calls to return, join.
#ifndef BOBBIN_RUNTIME_OFFLOAD_BLOCKING_POOL_H_
#define BOBBIN_RUNTIME_OFFLOAD_BLOCKING_POOL_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

#include "bobbin/offload.h"

namespace bobbin::internal {

class blocking_pool {
 public:
  explicit blocking_pool(unsigned max_threads) : max_threads_(max_threads == 0 ? 1 : max_threads) {}
  ~blocking_pool() { shutdown(); }

  // Queues `t`; false if the pool is shut down (the caller runs it itself).
  bool submit(offload_task* t);
  // Takes `t` back off the queue if no thread has started it; true if so.
  bool withdraw(offload_task* t);
  void shutdown();

  uint64_t calls() const { return calls_.load(std::memory_order_relaxed); }
  unsigned threads() const;

 private:
  void worker();
  static void complete(offload_task* t);
  // Takes mu_ for submit(): on a fiber without blocking the carrier.
  std::unique_lock<std::mutex> lock_from_caller();

  const unsigned max_threads_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  offload_task* head_ = nullptr;  // guarded by mu_
  offload_task* tail_ = nullptr;  // guarded by mu_
  unsigned threads_ = 0;          // guarded by mu_
  unsigned idle_ = 0;             // guarded by mu_
  bool stopping_ = false;         // guarded by mu_
  std::vector<std::thread> exited_;  // finished threads, joined later; guarded by mu_
  std::vector<std::thread::id> live_ids_;  // guarded by mu_
  std::vector<std::thread> live_;  // guarded by mu_
  std::atomic<uint64_t> calls_{0};
};

}  // namespace bobbin::internal

#endif  // BOBBIN_RUNTIME_OFFLOAD_BLOCKING_POOL_H_
