// Not part of the bobbin API.
//
// Fiber stacks: carved out of large anonymous mappings ("slabs"), each with a
// guard region at its low end, and recycled warm.
//
// Why slabs: one mapping per stack would hit vm.max_map_count (65530 by
// default) at ~65k fibers. A slab of 64 stacks is one mapping, and on Linux
// 6.13+ madvise(MADV_GUARD_INSTALL) turns a range into a guard without
// splitting it, so every stack is guarded even at a million fibers.
// On older kernels the guard is an mprotect(PROT_NONE) page, which splits the
// mapping (two extra map entries per stack); those guards stop at a budget of
// half the map-count limit, and then the policy decides: best_effort warns
// once and hands out unguarded stacks, required fails the spawn.
//
// Why warm reuse: a first-touch page fault costs ~16 µs on our VMs; a freed
// stack goes to a small per-carrier cache (no lock) or the shared free list
// and is handed out again with its top pages still resident.
#ifndef BOBBIN_RUNTIME_FIBER_STACK_POOL_H_
#define BOBBIN_RUNTIME_FIBER_STACK_POOL_H_

#include <atomic>
#include <cstddef>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "bobbin/runtime.h"

namespace bobbin::internal {

struct fiber_stack {
  char* region = nullptr;    // start of guard + usable stack
  std::size_t guard = 0;     // bytes of guard at `region`
  std::size_t size = 0;      // usable bytes above the guard
  bool pooled = false;       // default size, lives in a slab; else its own mapping
  bool guarded = false;

  char* low() const { return region + guard; }
  char* top() const { return region + guard + size; }
  explicit operator bool() const { return region != nullptr; }
};

class stack_pool {
 public:
  stack_pool(std::size_t default_size, std::size_t max_stacks, stack_guard_policy policy);
  ~stack_pool();  // unmaps every slab: all stacks must be out of use

  // A stack of `size` usable bytes (0: the default). `cache` is the calling
  // carrier's private cache, or null off a carrier.
  absl::StatusOr<fiber_stack> allocate(std::size_t size, std::vector<fiber_stack>* cache);
  void release(fiber_stack s, std::vector<fiber_stack>* cache);
  // A stack that will never be released (its fiber was abandoned at
  // shutdown): the pool keeps every slab mapped from then on.
  void leak(const fiber_stack&) { leaked_.fetch_add(1, std::memory_order_relaxed); }

  std::size_t default_size() const { return default_size_; }
  uint64_t stacks_mapped() const { return mapped_.load(std::memory_order_relaxed); }
  uint64_t stacks_unguarded() const { return unguarded_.load(std::memory_order_relaxed); }

  static constexpr std::size_t kCarrierCacheSize = 64;

 private:
  absl::Status map_slab() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool install_guard(char* at, std::size_t len);
  absl::StatusOr<fiber_stack> map_single(std::size_t size);

  const std::size_t page_;
  const std::size_t default_size_;
  const std::size_t guard_size_;
  const std::size_t max_stacks_;
  const stack_guard_policy policy_;
  std::atomic<std::size_t> in_use_{0};
  std::atomic<std::size_t> leaked_{0};
  std::atomic<uint64_t> mapped_{0};
  std::atomic<uint64_t> unguarded_{0};
  std::atomic<bool> warned_unguarded_{false};
  std::atomic<int> guard_install_ok_{-1};  // -1 unknown, 0 no (use mprotect), 1 yes
  std::atomic<long> mprotect_budget_;

  absl::Mutex mu_;
  std::vector<fiber_stack> free_ ABSL_GUARDED_BY(mu_);
  struct slab {
    char* base;
    std::size_t bytes;
  };
  std::vector<slab> slabs_ ABSL_GUARDED_BY(mu_);
};

}  // namespace bobbin::internal

#endif  // BOBBIN_RUNTIME_FIBER_STACK_POOL_H_
