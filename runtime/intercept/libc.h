// Not part of the bobbin API.
//
// The libc functions that bobbin's interceptors stand in front of, found
// with dlsym(RTLD_NEXT): the next definition after bobbin's in the dynamic
// linker's search order. That is glibc's, or a sanitizer's interceptor when
// one is loaded (the sanitizer runtime comes first in the search order, so a
// third-party call goes sanitizer -> bobbin -> glibc and both see it).
//
// Resolved on first use rather than in a constructor: another library's
// constructor may call read() before ours has run.
#ifndef BOBBIN_RUNTIME_INTERCEPT_LIBC_H_
#define BOBBIN_RUNTIME_INTERCEPT_LIBC_H_

#include <atomic>

namespace bobbin::internal::libc {

void* resolve_next(const char* name) noexcept;  // fatal if absent

// Whether another library's definition of `name` comes before bobbin's in
// the dynamic linker's search order: a sanitizer's interceptor, when
// bobbin is a shared library (libtsan is loaded first), not when bobbin is
// linked into the executable. Its interceptors then annotate the call for
// it, and bobbin must not do so again. Computed once per name by the
// caller's `cache` (0 unknown, 1 yes, 2 no): an atomic rather than a
// function-local static, whose guard a sanitizer might not see.
bool comes_before_bobbin(const char* name, std::atomic<int>& cache) noexcept;

template <class Fn>
class next_symbol {
 public:
  explicit constexpr next_symbol(const char* name) : name_(name) {}
  Fn* get() noexcept {
    Fn* f = fn_.load(std::memory_order_relaxed);
    if (__builtin_expect(f == nullptr, 0)) {
      f = reinterpret_cast<Fn*>(resolve_next(name_));
      fn_.store(f, std::memory_order_relaxed);  // every thread finds the same
    }
    return f;
  }
  // Both branches are tail calls, so the path through an interceptor off a
  // fiber costs a load, a test and a jump beyond glibc's own.
  template <class... Args>
  auto operator()(Args... args) {
    Fn* f = fn_.load(std::memory_order_relaxed);
    if (__builtin_expect(f != nullptr, 1)) return f(args...);
    return resolve_and_call(args...);
  }

 private:
  template <class... Args>
  __attribute__((noinline, cold)) auto resolve_and_call(Args... args) {
    return get()(args...);
  }

  const char* name_;
  std::atomic<Fn*> fn_{nullptr};
};

}  // namespace bobbin::internal::libc

// Declares `libc::name`, callable like the function it stands for.
// (glibc's attributes, such as warn_unused_result, do not carry over to the
// template argument; that is fine.)
#define BOBBIN_NEXT_SYMBOL(name)                                             \
  _Pragma("GCC diagnostic push") _Pragma("GCC diagnostic ignored \"-Wignored-attributes\"") \
  inline ::bobbin::internal::libc::next_symbol<decltype(::name)> name{#name}; \
  _Pragma("GCC diagnostic pop")

namespace bobbin::internal::libc {
// glibc's syscall(), past bobbin's own interposer (intercept/futex_calls.cc):
// the runtime's own raw system calls (a carrier's eventfd wake, fatal()'s
// write, its futex waits) are never taken over, and pay no interposer.
BOBBIN_NEXT_SYMBOL(syscall)
}  // namespace bobbin::internal::libc

#endif  // BOBBIN_RUNTIME_INTERCEPT_LIBC_H_
