// Not part of the bobbin API.
//
// The stack of a fiber that is switched out (parked or runnable), taken from
// its saved context without running it.
//
// Boost.Context saves a context as a small block on the fiber's own stack
// (callee-saved registers, then the return address into the code that
// switched away); fcontext_t points at it. The walker copies the live part
// of the stack, from that block up to the stack's top, into a scratch stack
// of its own, and resumes the *copy* with ontop_fcontext: the registers are
// restored from the copied block and a small function runs on the scratch
// stack as if it had been called where the fiber switched away. That
// function asks glibc's backtrace() (libgcc's DWARF unwinder, which needs no
// frame pointers, and Debian's libraries have none) for the return
// addresses, then jumps back to the walker and is never resumed.
//
// Frames whose canonical frame address is based on rbp read the fiber's
// real stack instead of the copy; both hold the same bytes, because the
// caller guarantees that nothing runs on the fiber meanwhile (world_pause.h).
// The fiber's own stack is only read, never written or touched below its
// stack pointer, so a dump costs no page faults and no memory on the fibers.
//
// Cost: a copy of the live stack (typically 1-4 KiB) and the unwind, a few
// microseconds per frame.
#ifndef BOBBIN_RUNTIME_INSPECT_STACK_WALK_H_
#define BOBBIN_RUNTIME_INSPECT_STACK_WALK_H_

#include <cstddef>
#include <cstdint>

#include "runtime/fiber/fiber_control.h"

namespace bobbin::internal {

// A stack to run the walker on, grown on demand; one per dump.
class scratch_stack {
 public:
  scratch_stack() = default;
  ~scratch_stack();
  scratch_stack(const scratch_stack&) = delete;
  scratch_stack& operator=(const scratch_stack&) = delete;

  // Room for `live` bytes of copied stack plus the walker; false if it
  // cannot be mapped.
  bool reserve(std::size_t live);
  char* top() const { return base_ + size_; }

 private:
  char* base_ = nullptr;
  std::size_t size_ = 0;
};

// Return addresses of switched-out fiber `f`, innermost first (the first is
// where it switched away, inside the runtime). Returns how many were
// stored, or 0 if `f` has never run or its saved context looks wrong. The
// caller must keep every carrier from resuming `f` until this returns.
int walk_switched_out_stack(const fiber_control& f, scratch_stack& scratch, uintptr_t* frames, int max_frames);

}  // namespace bobbin::internal

#endif  // BOBBIN_RUNTIME_INSPECT_STACK_WALK_H_
