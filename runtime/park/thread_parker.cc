#include "runtime/park/thread_parker.h"

#include <linux/futex.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <new>

#include "bobbin/internal/spin_lock.h"
#include "runtime/park/futex_wait.h"
#include "runtime/util/check.h"

namespace bobbin::internal {

// The free parkers. Parkers are carved out of pages mapped for them and
// never unmapped. No malloc and no mutex on the way: a thread's first wait
// may come from inside an allocator (jemalloc's background thread waits on
// a condition variable) or from a thread-exit destructor, and a mutex here
// would be bobbin's own interposed one.
class thread_parker_pool {
 public:
  static thread_parker* take() noexcept {
    lock_.lock();
    thread_parker* p = free_;
    if (p != nullptr) {
      free_ = p->next_free_;
    } else {
      if (fresh_left_ == 0) {
        void* page = ::mmap(nullptr, kChunkBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        BOBBIN_CHECK(page != MAP_FAILED, "bobbin: out of memory for a thread's parker");
        fresh_ = static_cast<slot*>(page);
        fresh_left_ = kChunkBytes / sizeof(slot);
      }
      p = new (&fresh_->parker) thread_parker;
      fresh_++;
      fresh_left_--;
    }
    lock_.unlock();
    return p;
  }
  static void give_back(thread_parker* p) noexcept {
    lock_.lock();
    p->next_free_ = free_;
    free_ = p;
    lock_.unlock();
  }
  // In a child after fork(), only the forking thread is left: a lock some
  // other thread held then would never be released.
  static void reset_after_fork() noexcept { lock_.unlock(); }

 private:
  // One cache line each: parkers of different threads are written by
  // different notifiers.
  struct alignas(64) slot {
    thread_parker parker;
  };
  static constexpr size_t kChunkBytes = 16 * 4096;
  static inline spin_lock lock_;
  static inline thread_parker* free_ = nullptr;
  static inline slot* fresh_ = nullptr;
  static inline size_t fresh_left_ = 0;
};

namespace {

// initial-exec, as tls_carrier: one %fs-relative load.
__thread thread_parker* tls_parker __attribute__((tls_model("initial-exec"))) = nullptr;
// Set once the thread's parker went back at its exit: a wait in a later
// exit destructor takes one again, and gives it back when it ends
// (thread_parker::wait_ended).
__thread bool tls_parker_returned __attribute__((tls_model("initial-exec"))) = false;

pthread_key_t g_return_key;

// A pthread key's destructor, not a C++ thread_local's: registering one of
// those allocates (__cxa_thread_atexit), and a key's slot does not, for the
// first 32 keys of the process.
void return_parker(void* p) noexcept {
  thread_parker_pool::give_back(static_cast<thread_parker*>(p));
  tls_parker = nullptr;
  tls_parker_returned = true;
}

void make_return_key() noexcept {
  BOBBIN_CHECK(pthread_key_create(&g_return_key, &return_parker) == 0, "bobbin: pthread_key_create failed");
  pthread_atfork(nullptr, nullptr, &thread_parker_pool::reset_after_fork);
}

}  // namespace

thread_parker* thread_parker::current() noexcept {
  if (thread_parker* p = tls_parker) return p;
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, &make_return_key);
  thread_parker* p = thread_parker_pool::take();
  tls_parker = p;
  if (!tls_parker_returned) pthread_setspecific(g_return_key, p);
  return p;
}

void thread_parker::wait_ended() noexcept {
  if (tls_parker_returned && tls_parker != nullptr) {
    thread_parker_pool::give_back(tls_parker);
    tls_parker = nullptr;
  }
}

void thread_parker::park(deadline d) noexcept {
  if (permit_.exchange(0, std::memory_order_acquire) == 1) return;
  timespec ts;
  const timespec* tsp = nullptr;
  if (!d.is_never()) {
    int64_t ns = d.monotonic_ns();
    ts.tv_sec = ns / 1000000000;
    ts.tv_nsec = ns % 1000000000;
    tsp = &ts;
  }
  // FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC deadline.
  // errno is the caller's: the condition-variable and lock calls that end
  // here (glibc's never set it) must leave it alone.
  const int saved_errno = errno;
  futex_syscall(&permit_, FUTEX_WAIT_BITSET_PRIVATE, 0u, tsp, FUTEX_BITSET_MATCH_ANY);
  errno = saved_errno;
  // A read-modify-write, not a store: an unpark that lands after the wait
  // returned is then either consumed here, and the caller's re-check that
  // follows sees what it published, or left for the next park.
  permit_.exchange(0, std::memory_order_acquire);
}

void thread_parker::unpark() noexcept {
  if (permit_.exchange(1, std::memory_order_release) == 0) {
    futex_syscall(&permit_, FUTEX_WAKE_PRIVATE, 1, nullptr, 0);
  }
}

}  // namespace bobbin::internal
