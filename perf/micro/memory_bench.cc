// Resident memory per parked unit of concurrency.
//   memory_bench bobbin N    N fibers (1 carrier, default 64 KiB stacks)
//                            parked on one channel
//   memory_bench threads N   N OS threads (default 8 MiB stacks, as
//                            glibc gives) blocked on one semaphore
// Prints one line: "memory <kind> N <n> rss_delta_kib <k> per_unit_bytes <b>".
// RSS is read from /proc/self/statm before creating them and once all are
// parked; the difference divided by N is what each costs the machine.
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <semaphore>
#include <thread>
#include <vector>

#include "bobbin/bobbin.h"

namespace {

long rss_kib() {
  long pages_total = 0, pages_resident = 0;
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return -1;
  if (std::fscanf(f, "%ld %ld", &pages_total, &pages_resident) != 2) pages_resident = -1;
  std::fclose(f);
  return pages_resident * (sysconf(_SC_PAGESIZE) / 1024);
}

void report(const char* kind, long n, long before, long after) {
  std::printf("memory %s N %ld rss_delta_kib %ld per_unit_bytes %.0f\n", kind, n, after - before,
              (after - before) * 1024.0 / static_cast<double>(n));
}

int run_fibers(long n) {
  bobbin::runtime_options o;
  o.carriers = 1;
  return bobbin::run([n] {
    bobbin::channel<int> ch(bobbin::unbounded);
    std::atomic<long> parked{0};
    std::vector<bobbin::fiber<>> fs;
    fs.reserve(static_cast<size_t>(n));
    const long before = rss_kib();
    for (long i = 0; i < n; i++) {
      fs.push_back(bobbin::spawn([&] {
        parked.fetch_add(1, std::memory_order_relaxed);
        (void)ch.receive();
      }));
    }
    while (parked.load() < n) bobbin::this_fiber::yield();
    bobbin::this_fiber::yield();  // the last ones reach receive()
    const long after = rss_kib();
    report("bobbin_fiber", n, before, after);
    ch.close();
    for (auto& f : fs) f.join();
    return 0;
  }, o);
}

int run_threads(long n) {
  std::counting_semaphore<> release(0);
  std::atomic<long> started{0};
  std::vector<std::thread> ts;
  ts.reserve(static_cast<size_t>(n));
  const long before = rss_kib();
  for (long i = 0; i < n; i++) {
    ts.emplace_back([&] {
      started.fetch_add(1);
      release.acquire();
    });
  }
  while (started.load() < n) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const long after = rss_kib();
  report("os_thread", n, before, after);
  release.release(n);
  for (auto& t : ts) t.join();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3 || (std::strcmp(argv[1], "bobbin") != 0 && std::strcmp(argv[1], "threads") != 0)) {
    std::fprintf(stderr, "usage: %s bobbin|threads N\n", argv[0]);
    return 2;
  }
  const long n = std::atol(argv[2]);
  return std::strcmp(argv[1], "bobbin") == 0 ? run_fibers(n) : run_threads(n);
}
