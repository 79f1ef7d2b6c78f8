#include "runtime/inspect/stack_walk.h"

#include <execinfo.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>

#include "runtime/fiber/context.h"

namespace bobbin::internal {

namespace {

// Boost.Context's saved-context block on x86-64 (jump_fcontext): mxcsr and
// the x87 control word, r12-r15, rbx, rbp (0x38 bytes), then the return
// address into the code that switched away.
constexpr std::size_t kSavedBlock = 0x40;
// Room on the scratch stack for the walker and libgcc's unwinder, and
// slack above the copy so that nothing the unwinder reads there faults.
constexpr std::size_t kWalkerRoom = 128 * 1024;
constexpr std::size_t kSlackAbove = 4096;
constexpr int kMaxWalk = 128;

struct walk_request {
  uintptr_t* frames;
  int max_frames;
  int count;
};

// Runs on the scratch stack, entered by ontop_fcontext as if called where
// the fiber switched away. Not instrumented: it runs on a stack the
// sanitizers were not told about, and never returns (its entry would stay
// on ThreadSanitizer's shadow call stack).
__attribute__((noinline, no_sanitize("address", "thread"))) ctx::transfer_t walk_here(ctx::transfer_t t) {
  auto* req = static_cast<walk_request*>(t.data);
  void* raw[kMaxWalk];
  int n = ::backtrace(raw, std::min(req->max_frames, kMaxWalk));
  for (int i = 0; i < n; i++) req->frames[i] = reinterpret_cast<uintptr_t>(raw[i]);
  req->count = n;
  ctx::jump_fcontext(t.fctx, nullptr);
  __builtin_unreachable();
}

// A word-by-word copy the sanitizers do not check: the live part of a
// parked fiber's stack holds the poisoned redzones of its frames.
__attribute__((no_sanitize("address", "thread"))) void copy_words(uintptr_t* to, const uintptr_t* from,
                                                                  std::size_t words) {
  const volatile uintptr_t* src = from;
  for (std::size_t i = 0; i < words; i++) to[i] = src[i];
}

}  // namespace

scratch_stack::~scratch_stack() {
  if (base_ != nullptr) ::munmap(base_ - 4096, size_ + 4096);
}

bool scratch_stack::reserve(std::size_t live) {
  const std::size_t page = 4096;
  const std::size_t want = (live + kWalkerRoom + kSlackAbove + page - 1) / page * page;
  if (want <= size_) return true;
  if (base_ != nullptr) ::munmap(base_ - page, size_ + page);
  base_ = nullptr;
  size_ = 0;
  // One guard page below: an unwinder that ran away faults instead of
  // writing over the heap.
  void* p = ::mmap(nullptr, want + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return false;
  ::mprotect(p, page, PROT_NONE);
  base_ = static_cast<char*>(p) + page;
  size_ = want;
  return true;
}

int walk_switched_out_stack(const fiber_control& f, scratch_stack& scratch, uintptr_t* frames, int max_frames) {
  if (!f.started.load(std::memory_order_relaxed)) return 0;
  const auto saved = reinterpret_cast<uintptr_t>(f.ctx.fctx);
  const auto low = reinterpret_cast<uintptr_t>(f.stack.low());
  const auto top = reinterpret_cast<uintptr_t>(f.stack.top());
  if (saved < low || saved + kSavedBlock > top || saved % 8 != 0) return 0;
  const std::size_t live = top - saved;
  if (!scratch.reserve(live)) return 0;
  // The copy keeps the block's alignment (mod 16) for the code it resumes.
  char* copy_top = scratch.top() - kSlackAbove + top % 16;
  auto* copy = reinterpret_cast<uintptr_t*>(copy_top - live);
  copy_words(copy, reinterpret_cast<const uintptr_t*>(saved), live / sizeof(uintptr_t));
  // The fiber resumes at the return address saved in the block: the
  // frames before that one are the walker's (and, under a sanitizer, its
  // interceptor's).
  const uintptr_t resume_pc = copy[kSavedBlock / sizeof(uintptr_t) - 1];
  uintptr_t raw[kMaxWalk];
  walk_request req{raw, kMaxWalk, 0};
  ctx::ontop_fcontext(static_cast<ctx::fcontext_t>(copy), &req, &walk_here);
  int first = 0;
  while (first < req.count && raw[first] != resume_pc) first++;
  if (first == req.count) return 0;
  const int n = std::min(req.count - first, max_frames);
  std::copy(raw + first, raw + first + n, frames);
  return n;
}

}  // namespace bobbin::internal
