// Ending epoll waits on users' fds that another thread closes (closed_fds.h
// says why and which).
#include "runtime/io/closed_fds.h"

#include <pthread.h>

#include <algorithm>
#include <mutex>
#include <new>
#include <vector>

#include "runtime/io/epoll_backend.h"

namespace bobbin::internal::closed_fds {

namespace {

constexpr unsigned kSlots = 4096;  // fd numbers sharing a slot cost a spurious look, no more

struct slot {
  std::atomic<uint32_t> waits{0};
  std::atomic<uint32_t> closes{0};
};
slot g_slots[kSlots];

slot& slot_of(int fd) { return g_slots[static_cast<unsigned>(fd) % kSlots]; }

// The backends, under g_backends_mu: a backend leaves the list before it is
// destroyed, and closing() tells them under the lock.
std::mutex g_backends_mu;
std::vector<epoll_backend*>* g_backends = nullptr;

}  // namespace

__attribute__((visibility("hidden"))) std::atomic<bool> g_epoll_in_use{false};

uint32_t wait_begins(int fd) {
  slot& s = slot_of(fd);
  s.waits.fetch_add(1, std::memory_order_seq_cst);
  return s.closes.load(std::memory_order_seq_cst);
}

void wait_ends(int fd) { slot_of(fd).waits.fetch_sub(1, std::memory_order_relaxed); }

uint32_t before_close(int fd) {
  if (fd < 0) return 0;
  slot& s = slot_of(fd);
  const uint32_t close_count = s.closes.fetch_add(1, std::memory_order_seq_cst) + 1;
  if (s.waits.load(std::memory_order_seq_cst) == 0) return 0;
  // 0 answers "nothing to do": a count that wrapped to 0 goes as 1 (a wait
  // begun just after it may then be ended: once in 2^32 closes of a slot).
  return close_count == 0 ? 1 : close_count;
}

void after_close(int fd, uint32_t close_count) {
  std::lock_guard<std::mutex> l(g_backends_mu);
  if (g_backends == nullptr) return;
  for (epoll_backend* b : *g_backends) b->note_closed(fd, close_count);
}

// A child of fork() has no carriers (only the thread that forked), and
// the locks above may have been held by a thread that did not come along:
// its close() calls (a child closing fds before exec) must not touch them.
void forget_backends_in_child() {
  g_epoll_in_use.store(false, std::memory_order_relaxed);
  g_backends = nullptr;  // the parent's list, leaked in the child
  new (&g_backends_mu) std::mutex;
}

void add_backend(epoll_backend* b) {
  static std::once_flag at_fork;
  std::call_once(at_fork, [] { pthread_atfork(nullptr, nullptr, forget_backends_in_child); });
  std::lock_guard<std::mutex> l(g_backends_mu);
  if (g_backends == nullptr) g_backends = new std::vector<epoll_backend*>;  // never freed: closes may come at exit
  g_backends->push_back(b);
  g_epoll_in_use.store(true, std::memory_order_relaxed);
}

void remove_backend(epoll_backend* b) {
  std::lock_guard<std::mutex> l(g_backends_mu);
  if (g_backends == nullptr) return;
  g_backends->erase(std::remove(g_backends->begin(), g_backends->end(), b), g_backends->end());
}

}  // namespace bobbin::internal::closed_fds
