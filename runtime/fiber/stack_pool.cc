#include "runtime/fiber/stack_pool.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "runtime/fiber/context.h"
#include "runtime/util/check.h"
#include "runtime/util/mutex_lock.h"

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102  // Linux 6.13
#endif

namespace bobbin::internal {
namespace {

constexpr std::size_t kStacksPerSlab = 64;

std::size_t round_up(std::size_t n, std::size_t to) { return (n + to - 1) / to * to; }

long read_max_map_count() {
  FILE* f = std::fopen("/proc/sys/vm/max_map_count", "r");
  long v = 65530;
  if (f) {
    if (std::fscanf(f, "%ld", &v) != 1) v = 65530;
    std::fclose(f);
  }
  return v;
}

}  // namespace

stack_pool::stack_pool(std::size_t default_size, std::size_t max_stacks, stack_guard_policy policy)
    : page_(static_cast<std::size_t>(::sysconf(_SC_PAGESIZE))),
      default_size_(round_up(default_size, page_)),
      // A 16 KiB guard costs no memory with MADV_GUARD_INSTALL and catches
      // frames up to that size skipping past it; mprotect guards stay at one
      // page so they cost as little as possible.
      guard_size_(4 * page_),
      max_stacks_(max_stacks),
      policy_(policy),
      // Every mprotect guard splits a mapping into up to three; keep half the
      // limit for the rest of the process.
      mprotect_budget_(read_max_map_count() / 4) {}

stack_pool::~stack_pool() {
  mutex_lock l(&mu_);
  if (leaked_.load() != 0) return;  // abandoned fibers' stacks stay mapped
  for (const slab& s : slabs_) ::munmap(s.base, s.bytes);
}

bool stack_pool::install_guard(char* at, std::size_t len) {
  int mode = guard_install_ok_.load(std::memory_order_relaxed);
  if (mode != 0) {
    if (::madvise(at, len, MADV_GUARD_INSTALL) == 0) {
      guard_install_ok_.store(1, std::memory_order_relaxed);
      return true;
    }
    if (mode == 1) return false;  // it worked before; a real failure
    guard_install_ok_.store(0, std::memory_order_relaxed);
  }
  if (mprotect_budget_.fetch_sub(1, std::memory_order_relaxed) <= 0) return false;
  return ::mprotect(at + len - page_, page_, PROT_NONE) == 0;
}

// Reserves address space for stacks; pages are committed on first touch.
static absl::StatusOr<char*> map_stack_memory(std::size_t bytes) {
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK,
                   -1, 0);
  if (p == MAP_FAILED) {
    int err = errno;
    return absl::ResourceExhaustedError(
        absl::StrCat("bobbin: cannot map fiber stack memory (", bytes, " bytes): ", std::strerror(err)));
  }
  return static_cast<char*>(p);
}

absl::Status stack_pool::map_slab() {
  const std::size_t stride = guard_size_ + default_size_;
  const std::size_t bytes = stride * kStacksPerSlab;
  absl::StatusOr<char*> mapped = map_stack_memory(bytes);
  if (!mapped.ok()) return mapped.status();
  char* base = *mapped;
  slabs_.push_back({base, bytes});
  // Hand out the lowest stacks first: pushed last, popped first.
  for (std::size_t i = kStacksPerSlab; i-- > 0;) {
    fiber_stack s;
    s.region = base + i * stride;
    s.guard = guard_size_;
    s.size = default_size_;
    s.pooled = true;
    s.guarded = install_guard(s.region, guard_size_);
    free_.push_back(s);
  }
  mapped_.fetch_add(kStacksPerSlab, std::memory_order_relaxed);
  return absl::OkStatus();
}

absl::StatusOr<fiber_stack> stack_pool::map_single(std::size_t size) {
  absl::StatusOr<char*> mapped = map_stack_memory(guard_size_ + size);
  if (!mapped.ok()) return mapped.status();
  fiber_stack s;
  s.region = *mapped;
  s.guard = guard_size_;
  s.size = size;
  s.guarded = install_guard(s.region, guard_size_);
  mapped_.fetch_add(1, std::memory_order_relaxed);
  return s;
}

absl::StatusOr<fiber_stack> stack_pool::allocate(std::size_t size, std::vector<fiber_stack>* cache) {
  if (max_stacks_ != 0 && in_use_.fetch_add(1, std::memory_order_relaxed) >= max_stacks_) {
    in_use_.fetch_sub(1, std::memory_order_relaxed);
    return absl::ResourceExhaustedError(
        absl::StrCat("bobbin: fiber limit reached (runtime_options.max_fibers = ", max_stacks_, ")"));
  }
  if (max_stacks_ == 0) in_use_.fetch_add(1, std::memory_order_relaxed);

  absl::StatusOr<fiber_stack> got;
  size = size == 0 ? default_size_ : round_up(size, page_);
  if (size != default_size_) {
    got = map_single(size);
  } else if (cache != nullptr && !cache->empty()) {
    got = cache->back();
    cache->pop_back();
  } else {
    mutex_lock l(&mu_);
    if (free_.empty()) {
      absl::Status st = map_slab();
      if (!st.ok()) got = st;
    }
    if (!free_.empty()) {
      got = free_.back();
      free_.pop_back();
      // Refill the carrier's cache in one lock hold, so the next spawns on
      // this carrier do not touch the shared lock.
      while (cache != nullptr && cache->size() < kCarrierCacheSize / 2 && !free_.empty()) {
        cache->push_back(free_.back());
        free_.pop_back();
      }
    }
  }
  if (!got.ok()) {
    in_use_.fetch_sub(1, std::memory_order_relaxed);
    return got;
  }
  if (!got->guarded) {
    if (policy_ == stack_guard_policy::required) {
      release(*got, nullptr);
      return absl::ResourceExhaustedError(
          "bobbin: no guard page can be installed (vm.max_map_count budget spent and no MADV_GUARD_INSTALL); "
          "stack_guard_policy::required");
    }
    unguarded_.fetch_add(1, std::memory_order_relaxed);
    if (!warned_unguarded_.exchange(true)) {
      write_stderr(
          "bobbin: warning: fiber stacks are now handed out without guard pages (kernel lacks "
          "MADV_GUARD_INSTALL and the vm.max_map_count budget for mprotect guards is spent); a stack "
          "overflow may corrupt memory silently. Raise vm.max_map_count or use a 6.13+ kernel.\n");
    }
  }
  return got;
}

void stack_pool::release(fiber_stack s, std::vector<fiber_stack>* cache) {
  in_use_.fetch_sub(1, std::memory_order_relaxed);
#if BOBBIN_ASAN
  // An ended fiber's last frames never return, so their redzones are still
  // poisoned; the next fiber on this stack must start from clean shadow.
  ASAN_UNPOISON_MEMORY_REGION(s.low(), s.size);
#endif
  if (!s.pooled) {
    ::munmap(s.region, s.guard + s.size);
    return;
  }
  if (cache != nullptr && cache->size() < kCarrierCacheSize) {
    cache->push_back(s);
    return;
  }
  mutex_lock l(&mu_);
  free_.push_back(s);
  // Spill half the cache too, so stacks freed on one carrier can serve spawns
  // on another.
  while (cache != nullptr && cache->size() > kCarrierCacheSize / 2) {
    free_.push_back(cache->back());
    cache->pop_back();
  }
}

}  // namespace bobbin::internal
