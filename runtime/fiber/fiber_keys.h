// Not part of the bobbin API.
//
// Per-fiber pthread keys: for the keys of a few libraries, the value that
// pthread_getspecific and pthread_setspecific see on a fiber is the fiber's
// own, as a thread's is its own, and the key's destructor runs on it when
// the fiber ends (runtime/intercept/key_calls.cc interposes the calls).
//
// Why, and why only some libraries. A fiber that parks inside an
// intercepted call stays inside the library that called it, and the next
// fiber on its carrier may enter the same library. For OpenSSL that is
// common (its rwlocks park, 1 handshake in ~160 under TSan), and OpenSSL
// keeps its per-thread state in pthread keys only: the error queue, with
// the marks its decoders set and pop around each attempt, and the per-thread
// random generators. Two fibers sharing one queue lose or steal each other's
// errors ("error setting certificate file" from libcurl). With the keys per
// fiber, each fiber has its own queue, as each thread has.
// Every library's keys cannot be per fiber: many keep their per-thread state
// in a C++ thread_local or __thread variable and use a key only to learn
// that the thread exits (Abseil's thread identity, jemalloc, tcmalloc,
// mimalloc). Made on a fiber, such a key's value would be "destroyed" when
// the fiber ends, freeing state the carrier thread still uses. So the keys
// are per fiber only when pthread_key_create is called from a library named
// in kFiberKeyLibraries or in BOBBIN_FIBER_KEYS (a comma-separated list of
// file name prefixes, such as "libfoo.so,libbar"), with interception on
// (BOBBIN_INTERCEPT unset or not 0). Every other key stays glibc's, per
// carrier thread, as native code's keys are on Java's virtual threads and
// Go's goroutines.
//
// Cost: pthread_getspecific on a per-fiber key is a table lookup on the
// fiber; on any other key one more load and branch than glibc's. Each fiber
// that uses OpenSSL builds its own error queue and random generators on
// first use and frees them when it ends.
#ifndef BOBBIN_RUNTIME_FIBER_FIBER_KEYS_H_
#define BOBBIN_RUNTIME_FIBER_FIBER_KEYS_H_

#include <pthread.h>

#include <atomic>
#include <cstdint>

namespace bobbin::internal {

struct fiber_control;
struct fiber_local_table;

namespace fiber_keys {

// glibc's limit (PTHREAD_KEYS_MAX): every key it hands out is below it.
inline constexpr unsigned kMaxKeys = 1024;

// A key's registry word: the key's generation (bumped by every create and
// delete, so a value stored under a deleted key is not found under the key
// that reuses its number) shifted left once, and bit 0 set when the key is
// per fiber. Written by create and delete, read by every get and set.
extern std::atomic<uint64_t> registry[kMaxKeys];

inline constexpr uint64_t kPerFiber = 1;

// Whether `creator` (an address in the caller of pthread_key_create) lies in
// a library whose keys are per fiber (see above). Asks the dynamic linker:
// for key creation only, which is rare.
bool library_keys_per_fiber(const void* creator) noexcept;

// Records a key glibc just created.
void created(pthread_key_t key, void (*destructor)(void*), bool per_fiber) noexcept;
// Records a key about to be deleted: its values on fibers are no longer
// found (their destructor is not run, as glibc's are not).
void deleted(pthread_key_t key) noexcept;

// `f`'s value for a per-fiber key whose registry word is `word`.
void* get(fiber_control* f, pthread_key_t key, uint64_t word) noexcept;
// Stores it; ENOMEM if the fiber's table cannot grow.
int set(fiber_control* f, pthread_key_t key, uint64_t word, const void* value) noexcept;

// One round of what glibc does at thread exit: each non-null value of `t`'s
// per-fiber keys is set to null and its key's destructor called with it.
// True if it ran a destructor (which may have stored values again: the
// caller runs up to PTHREAD_DESTRUCTOR_ITERATIONS rounds, fiber_local.cc).
bool destroy_values(fiber_local_table* t) noexcept;

}  // namespace fiber_keys
}  // namespace bobbin::internal

#endif  // BOBBIN_RUNTIME_FIBER_FIBER_KEYS_H_
