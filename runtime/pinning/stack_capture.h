// Not part of the bobbin API.
//
// Stack traces of *another* thread (a pinned carrier), without stopping it
// for long and without frame pointers (Debian's libraries have none):
// starting from the thread's stack pointer, every word that points just
// after a call instruction inside an executable mapping is taken as a
// return address (a stack scan). The result is innermost first; it can
// contain stale return addresses left in dead frames, which is why reports
// call it a scanned stack.
//
//   running on the CPU: the monitor sends the carrier a signal whose handler
//     scans from the interrupted stack pointer (async-signal-safe: loads and
//     compares only), into the carrier's capture buffer;
//   blocked in a system call: no signal (it could cut a sleep(3) short); the
//     monitor scans from the stack pointer /proc/self/task/<tid>/syscall
//     shows, and re-reads that file to check the thread stayed blocked.
#ifndef BOBBIN_RUNTIME_PINNING_STACK_CAPTURE_H_
#define BOBBIN_RUNTIME_PINNING_STACK_CAPTURE_H_

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"

namespace bobbin::internal {

inline constexpr int kMaxCapturedFrames = 40;

struct stack_capture {
  uintptr_t frames[kMaxCapturedFrames];
  int count = 0;
};

// Held across refresh_code_ranges() and the captures that follow it, by
// the pinning monitor and fiber dumps, so that one does not rewrite the
// table while the other's capture reads it.
absl::Mutex& capture_mutex();

// Refreshes the table of executable mappings the scanner checks against.
// Call before a capture, holding capture_mutex().
void refresh_code_ranges();

// Scans [sp, high) for return addresses after `pc` (frame 0), only if sp
// lies in [low, high): an sp from elsewhere (another stack, a signal stack,
// a capture that raced a switch) is not scanned, since the memory above it
// may be a guard page or unmapped.
void scan_stack(uintptr_t pc, uintptr_t sp, uintptr_t low, uintptr_t high, stack_capture& out);

// What /proc says of a thread: blocked in system call `nr` (>= 0) with the
// given stack and program counters, running (nr == -2), or unknown (-3).
struct thread_syscall_state {
  long nr = -3;
  uintptr_t sp = 0;
  uintptr_t pc = 0;
  char state = '?';  // /proc .../stat state: R running, S/D sleeping, ...
};
thread_syscall_state read_thread_state(pid_t tid);

// "read(2)" for a known system call number, "syscall 123" otherwise.
std::string syscall_name(long nr);

// absl::InitializeSymbolizer, once per process: every symbolizing path
// (pin reports, fiber dumps) must call this one, since two initializations
// racing each other corrupt the symbolizer's state (TSan caught a pin report
// and a lock-cycle report doing so).
void initialize_symbolizer_once();

// Held around every absl::Symbolize call in bobbin. Debian's Abseil is not
// built with ThreadSanitizer, so the symbolizer's own locking is invisible
// to it, and concurrent lookups (a pin report beside a dump) look like races
// on the files it reads; one lock also keeps its file cache simple.
absl::Mutex& symbolizer_mutex();

// Symbolized frames (innermost first); stops after bobbin's fiber entry.
std::vector<std::string> symbolize(const stack_capture& c);

// The signal the monitor uses to ask a running carrier for its stack.
int capture_signal();
void install_capture_handler();

}  // namespace bobbin::internal

#endif  // BOBBIN_RUNTIME_PINNING_STACK_CAPTURE_H_
