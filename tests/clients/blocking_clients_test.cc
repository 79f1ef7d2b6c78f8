// Real client libraries nobody here wrote, called unmodified from fibers:
// libpq against PostgreSQL, hiredis against redis-server, libcurl against
// bobbin's example HTTP server, plus getaddrinfo, usleep and
// std::this_thread::sleep_for. For each: 200 fibers on 2 carriers make the
// plain blocking call in a loop, every reply is checked, no pinning is
// reported, and a bystander fiber that sleeps 5 ms in a loop stays on time.
//
// Links libbobbin.so, as a user's program does. The servers are started by
// run_with_servers.py, which names them in BOBBIN_TEST_PG,
// BOBBIN_TEST_REDIS_SOCKET and BOBBIN_TEST_HTTP_URL.
#include <arpa/inet.h>
#include <curl/curl.h>
#include <hiredis/hiredis.h>
#include <libpq-fe.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <utility>
#include <future>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "bobbin/bobbin.h"
#include "tests/testing/delayed_pool.h"
#include "tests/testing/runtime_fixture.h"

#if BOBBIN_HAVE_SPDLOG
#include <spdlog/async.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/spdlog.h>
#endif

namespace {

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

constexpr bool kSanitized = bobbin::testing::kUnderSanitizer;

constexpr int kFibers = 200;
constexpr auto kDuration = 3s;

std::string env(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr) {
    ADD_FAILURE() << name << " is not set: run this test through tests/clients/run_with_servers.py";
    return {};
  }
  return v;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

struct outcome {
  long ok = 0;
  long bad = 0;
  double bystander_p99_ms = 0;
  double bystander_max_ms = 0;
  uint64_t pin_events = 0;
  uint64_t syscall_pin_events = 0;
  uint64_t memory_mapping_stalls = 0;  // pins in mmap, mprotect, munmap, madvise without a stack (run_clients)
  uint64_t intercepted_parks = 0;
  uint64_t condition_parks = 0;  // waits in std::condition_variable that parked a fiber
  std::vector<std::string> pin_reports;
};

// Runs `client(i, keep_going)` on `fibers` fibers (kFibers by default) of a
// 2-carrier runtime for kDuration; each returns {ok, bad} counts. A
// bystander fiber sleeps 5 ms in a loop and records how late it wakes.
outcome run_clients(const std::function<std::pair<long, long>(int, const std::function<bool()>&)>& client,
                    int fibers = kFibers) {
  outcome out;
  bobbin::runtime_options o;
  o.carriers = 2;
  auto rt = bobbin::runtime::start(o).value();
  // Start every offload pool thread before measuring: under ThreadSanitizer
  // pthread_create waits on the sanitizer's own thread registry (a futex),
  // so a carrier starting a pool thread for getaddrinfo looked pinned
  // (20.4 ms, once in CI). Pool threads stay 10 s idle, longer than a test.
  {
    std::vector<bobbin::fiber<>> warm;
    for (unsigned i = 0; i < o.offload_threads; i++) {
      warm.push_back(rt->spawn([] { bobbin::offload([] { std::this_thread::sleep_for(std::chrono::milliseconds(20)); }); }));
    }
    for (auto& f : warm) f.join();
  }
  const uint64_t pins_before_measuring = rt->stats().pin_events;
  std::mutex reports_mu;
  rt->set_pin_listener([&](const bobbin::pin_event& e) {
    if (e.ended) return;
    std::lock_guard l(reports_mu);
    std::string report = bobbin::format_pin_event(e, true);
    // A sanitizer's own allocator lock (ASan's quarantine recycling, behind
    // free() in freeaddrinfo, contended by 64 pool threads: 26.7 ms once in
    // CI) is a futex no production build has and no interposer can park.
    // When a pin's stack could not be captured, the report names only the
    // call, and a futex or a memory-mapping call cannot be told apart from
    // the sanitizer runtime's own, which makes them behind every allocation
    // (with one core kept busy: futex(2) 23.6 ms under ASan, mmap 21.0 ms
    // under TSan, both in the libpq case). Under the sanitizers those are
    // not counted; every call interception parks still is, and the normal
    // build counts every pin. Parking OS locks is issues 29-33.
    const bool unattributed_runtime_call =
        // (The monitor appends an explanation to the futex(2) detail, so
        // that one is matched anywhere in it.)
        e.stack.empty() && (e.detail.find(" futex(2)") != std::string::npos || ends_with(e.detail, " syscall 9") ||
                            ends_with(e.detail, " syscall 10") || ends_with(e.detail, " syscall 11") ||
                            ends_with(e.detail, " syscall 28"));  // mmap, mprotect, munmap, madvise
    const bool in_sanitizer_runtime =
        kSanitized && (report.find("__sanitizer::") != std::string::npos || unattributed_runtime_call);
    if (e.reason == bobbin::pin_reason::syscall && !in_sanitizer_runtime) out.syscall_pin_events++;
    // A memory-mapping call never waits for I/O or for another thread's
    // lock of the program's; it pins only when the kernel stalls it on the
    // process's mmap lock. In the normal build that was seen once (libpq
    // case, mprotect from glibc malloc growing a thread arena, 27.8 ms, with
    // 200 PostgreSQL backends starting on the same 2 cores): the VM's
    // stall, not a call interception could park. Counted apart, and shown.
    const bool memory_mapping_stall = e.reason == bobbin::pin_reason::syscall && e.stack.empty() &&
                                      (ends_with(e.detail, " syscall 9") || ends_with(e.detail, " syscall 10") ||
                                       ends_with(e.detail, " syscall 11") || ends_with(e.detail, " syscall 28"));
    if (memory_mapping_stall) {
      out.memory_mapping_stalls++;
      std::printf("  not counted (a kernel stall): %s\n", report.c_str());
    }
    out.pin_reports.push_back(std::move(report));
  });
  std::atomic<bool> stop{false};
  auto bystander = rt->spawn([&] {
    std::vector<double> late;
    // Allocated up front: under load the allocator's lock is contended by
    // the offload pool's threads, and a futex wait in push_back would be the
    // bystander pinning its own carrier.
    late.reserve(4096);
    while (!stop.load(std::memory_order_relaxed)) {
      auto t = clock_type::now();
      bobbin::this_fiber::sleep_for(5ms);
      late.push_back(std::chrono::duration<double, std::milli>(clock_type::now() - t - 5ms).count());
    }
    return late;
  });
  std::vector<bobbin::fiber<std::pair<long, long>>> fs;
  // Every caller makes at least one round, however late it got going: 200
  // PostgreSQL backends take 2.4 s to start on this 2-core VM from plain
  // threads as from fibers, and up to 5.3 s beside the queries of the
  // callers already connected, so a caller may connect after the window.
  for (int i = 0; i < fibers; i++) {
    fs.push_back(rt->spawn([&, i] {
      bool first = true;
      const std::function<bool()> keep_going = [&] {
        const bool go = first || !stop.load(std::memory_order_relaxed);
        first = false;
        return go;
      };
      return client(i, keep_going);
    }));
  }
  std::this_thread::sleep_for(kDuration);
  stop = true;
  for (auto& f : fs) {
    auto [ok, bad] = f.join();
    out.ok += ok;
    out.bad += bad;
  }
  std::vector<double> late = bystander.join();
  std::sort(late.begin(), late.end());
  if (!late.empty()) {
    out.bystander_p99_ms = late[late.size() * 99 / 100];
    out.bystander_max_ms = late.back();
  }
  auto s = rt->stats();
  out.pin_events = s.pin_events - pins_before_measuring;
  out.intercepted_parks = s.intercepted_parks;
  out.condition_parks = s.os_condition_parks;
  std::printf("  %ld replies checked, %ld bad, bystander p99 %.2f ms (max %.2f), %llu pin events, "
              "%llu parks in intercepted calls\n",
              out.ok, out.bad, out.bystander_p99_ms, out.bystander_max_ms,
              static_cast<unsigned long long>(out.pin_events), static_cast<unsigned long long>(out.intercepted_parks));
  return out;
}

// What every client test asserts: every reply was right (and since every
// caller makes at least one round, every caller got a right reply), nothing
// pinned, and the bystander stayed on time. How many
// replies 3 s buys is the machine's speed, not the runtime's behaviour: it
// is measured in perf/blocking (scripts/bench --blocking), beside threads;
// a floor here failed on a slow day with nothing wrong (9,443 of 10,000,
// 0 bad, 0 pins).
// Under the sanitizers everything runs several times slower: a fiber may
// hold its carrier past the 20 ms CPU threshold on its own, so only pins by
// blocking system calls (what interception is for) count there.
// When the bystander's 5 ms sleep ends it runs next on its carrier, ahead
// of the busy clients queued there, once the carrier reaps the timer (at
// most about 500 us later while they run long; before 2026-12-06 it waited
// behind them all): its p99 lateness was 4-5 ms alone and reached 10.6 ms
// with the rest of the suite running beside it (measured while it still
// waited its turn); on a day the VM ran 2.5-4x slower, the libpq
// case (PostgreSQL on the same 2 cores) measured 24.8 and 34.7 ms with no
// pin at all. A pinned carrier makes it 3 s, so 100 ms still tells the two
// apart. The bound is scaled in the sanitizer builds (ASan with one core
// kept busy: 115.6 ms), up to 600 ms, which still does.
void expect_no_pinning_by_system_calls(const outcome& o);
void expect_no_pinning(const outcome& o) {
  expect_no_pinning_by_system_calls(o);
  EXPECT_GT(o.intercepted_parks, 0u);
}

// expect_no_pinning without its last check, for code that waits only on OS
// locks and condition variables (no intercepted I/O: intercepted_parks may
// stay 0).
void expect_no_pinning_by_system_calls(const outcome& o) {
  EXPECT_EQ(o.bad, 0);
  if (kSanitized) {
    EXPECT_EQ(o.syscall_pin_events, 0u) << (o.pin_reports.empty() ? "" : o.pin_reports[0]);
  } else {
    EXPECT_EQ(o.pin_events - o.memory_mapping_stalls, 0u) << (o.pin_reports.empty() ? "" : o.pin_reports[0]);
  }
  const auto bystander_bound = std::min<std::chrono::milliseconds>(bobbin::testing::scaled(100ms), 600ms);
  EXPECT_LT(o.bystander_p99_ms, static_cast<double>(bystander_bound.count()));
}

TEST(BlockingClientsTest, LibpqQueriesPark) {
  const std::string conninfo = env("BOBBIN_TEST_PG");
  ASSERT_FALSE(conninfo.empty());
  outcome o = run_clients([&](int i, const std::function<bool()>& keep_going) -> std::pair<long, long> {
    long ok = 0, bad = 0;
    PGconn* conn = PQconnectdb(conninfo.c_str());
    if (PQstatus(conn) != CONNECTION_OK) {
      std::fprintf(stderr, "fiber %d: %s", i, PQerrorMessage(conn));
      PQfinish(conn);
      return {0, 1};
    }
    for (long n = 0; keep_going(); n++) {
      // ~20 ms in the server; the reply names this fiber and round.
      std::string sql = "SELECT pg_sleep(0.02), '" + std::to_string(i) + ":" + std::to_string(n) + "'";
      PGresult* r = PQexec(conn, sql.c_str());
      const bool good = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 &&
                        std::string(PQgetvalue(r, 0, 1)) == std::to_string(i) + ":" + std::to_string(n);
      (good ? ok : bad)++;
      PQclear(r);
    }
    PQfinish(conn);
    return {ok, bad};
  });
  expect_no_pinning(o);
}

// The most common shape of a C++ connection pool: connections behind a
// std::mutex and a std::condition_variable; take one (waiting while none is
// free), query, give it back, notify_one.
class pg_pool {
 public:
  pg_pool(const std::string& conninfo, int size) {
    for (int i = 0; i < size; i++) {
      PGconn* c = PQconnectdb(conninfo.c_str());
      if (PQstatus(c) != CONNECTION_OK) {
        ADD_FAILURE() << "pool connection " << i << ": " << PQerrorMessage(c);
        PQfinish(c);
        continue;
      }
      all_.push_back(c);
    }
    free_ = all_;
  }
  ~pg_pool() {
    for (PGconn* c : all_) PQfinish(c);
  }
  size_t size() const { return all_.size(); }
  PGconn* take() {
    std::unique_lock l(mu_);
    available_.wait(l, [&] { return !free_.empty(); });
    PGconn* c = free_.back();
    free_.pop_back();
    return c;
  }
  void give(PGconn* c) {
    {
      std::lock_guard l(mu_);
      free_.push_back(c);
    }
    available_.notify_one();
  }

 private:
  std::mutex mu_;
  std::condition_variable available_;
  std::vector<PGconn*> free_;
  std::vector<PGconn*> all_;
};

// One caller's loop on the pool: each reply names the caller and round.
std::pair<long, long> query_through_pool(pg_pool& pool, int i, const std::function<bool()>& keep_going) {
  long ok = 0, bad = 0;
  for (long n = 0; keep_going(); n++) {
    const std::string tag = std::to_string(i) + ":" + std::to_string(n);
    PGconn* c = pool.take();
    PGresult* r = PQexec(c, ("SELECT pg_sleep(0.02), '" + tag + "'").c_str());
    const bool good = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && std::string(PQgetvalue(r, 0, 1)) == tag;
    (good ? ok : bad)++;
    PQclear(r);
    pool.give(c);
  }
  return {ok, bad};
}

TEST(BlockingClientsTest, ConnectionPoolBehindAStdConditionVariable) {
  // 200 callers share 8 libpq connections. Before condition variables were
  // taken over, the fibers deadlocked: 0 queries in 3 s (a waiting fiber
  // blocked its carrier in pthread_cond_wait, so the fiber that would give
  // a connection back never ran). The same loop on 200 plain threads is the
  // yardstick: the pool's own bound is 8 connections / 20 ms = 400 queries
  // a second, and fibers should reach what threads reach.
  const std::string conninfo = env("BOBBIN_TEST_PG");
  ASSERT_FALSE(conninfo.empty());
  constexpr int kConnections = 8;
  long thread_queries = 0;
  {
    pg_pool pool(conninfo, kConnections);
    ASSERT_EQ(pool.size(), static_cast<size_t>(kConnections));
    std::atomic<bool> stop{false};
    std::atomic<long> ok{0}, bad{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < kFibers; i++) {
      threads.emplace_back([&, i] {
        auto [o, b] = query_through_pool(pool, i, [&] { return !stop.load(); });
        ok += o;
        bad += b;
      });
    }
    std::this_thread::sleep_for(kDuration);
    stop = true;
    for (auto& t : threads) t.join();
    EXPECT_EQ(bad.load(), 0);
    thread_queries = ok.load();
  }
  pg_pool pool(conninfo, kConnections);
  ASSERT_EQ(pool.size(), static_cast<size_t>(kConnections));
  outcome o = run_clients([&](int i, const std::function<bool()>& keep_going) {
    return query_through_pool(pool, i, keep_going);
  });
  std::printf("  200 threads: %ld queries in %lld s; 200 fibers: %ld\n", thread_queries,
              static_cast<long long>(kDuration.count()), o.ok);
  RecordProperty("thread_queries", std::to_string(thread_queries));
  RecordProperty("fiber_queries", std::to_string(o.ok));
  expect_no_pinning(o);
  EXPECT_GE(o.ok, kFibers) << "some caller never got a connection";
  // A behaviour check, not a benchmark: a deadlock or a carrier blocked in
  // the wait gives a fraction; both sides sit near the pool's 400/s.
  if (!kSanitized) {
    EXPECT_GE(o.ok, thread_queries * 8 / 10);
  }
}

#if BOBBIN_HAVE_SPDLOG
TEST(BlockingClientsTest, SpdlogAsyncLoggerTakesEveryLineFromAThousandFibers) {
  // spdlog's asynchronous logger, unmodified: callers push onto its bounded
  // queue under a std::mutex, waiting on a std::condition_variable while it
  // is full (the default overflow policy), and its own worker thread writes
  // the file. 1,000 fibers log as fast as the worker drains, yielding every
  // 16 lines as a service's code would between requests: every line
  // reaches the file once, in each fiber's order, nothing pins.
  const std::string path = ::testing::TempDir() + "bobbin_spdlog_" + std::to_string(::getpid()) + ".log";
  constexpr int kLoggers = 1000;
  long logged = 0;
  {
    // A small queue: callers do wait for room. Smaller still under
    // ThreadSanitizer, where the callers are slowed more than the worker's
    // file writes and a queue of 1,024 was not always filled (on epoll).
    spdlog::init_thread_pool(bobbin::testing::kUnderTsan ? 64 : 1024, 1);
    auto logger = spdlog::basic_logger_mt<spdlog::async_factory>("bobbin_test", path, /*truncate=*/true);
    logger->set_pattern("%v");
    outcome o = run_clients(
        [&](int i, const std::function<bool()>& keep_going) -> std::pair<long, long> {
          long n = 0;
          while (keep_going()) {
            logger->info("fiber {} line {}", i, n++);
            if (n % 16 == 0) bobbin::this_fiber::yield();
          }
          return {n, 0};
        },
        kLoggers);
    logged = o.ok;
    EXPECT_GT(o.condition_parks, 0u) << "the queue never filled: no fiber waited for room";
    logger->flush();
    spdlog::shutdown();  // joins the worker: the file is complete
    expect_no_pinning_by_system_calls(o);
  }
  std::FILE* f = std::fopen(path.c_str(), "r");
  ASSERT_NE(f, nullptr);
  std::vector<long> next(kLoggers, 0);
  long lines = 0, out_of_order = 0;
  char buf[128];
  while (std::fgets(buf, sizeof buf, f) != nullptr) {
    int i = -1;
    long n = -1;
    if (std::sscanf(buf, "fiber %d line %ld", &i, &n) != 2 || i < 0 || i >= kLoggers) {
      ADD_FAILURE() << "a line that was never logged: " << buf;
      break;
    }
    if (n != next[i]) out_of_order++;
    next[i] = n + 1;
    lines++;
  }
  std::fclose(f);
  std::remove(path.c_str());
  std::printf("  %ld lines logged by %d fibers, %ld in the file\n", logged, kLoggers, lines);
  EXPECT_EQ(lines, logged);
  EXPECT_EQ(out_of_order, 0);
  for (int i = 0; i < kLoggers; i++) EXPECT_GE(next[i], 1) << "fiber " << i << " logged nothing";
}
#endif

TEST(BlockingClientsTest, HiredisCommandsPark) {
  const std::string sock = env("BOBBIN_TEST_REDIS_SOCKET");
  ASSERT_FALSE(sock.empty());
  outcome o = run_clients([&](int i, const std::function<bool()>& keep_going) -> std::pair<long, long> {
    long ok = 0, bad = 0;
    redisContext* c = redisConnectUnix(sock.c_str());
    if (c == nullptr || c->err) {
      if (c) redisFree(c);
      return {0, 1};
    }
    // hiredis sets SO_RCVTIMEO/SO_SNDTIMEO on its socket.
    timeval tv{10, 0};
    redisSetTimeout(c, tv);
    const std::string key = "k" + std::to_string(i);
    for (long n = 0; keep_going(); n++) {
      const std::string value = std::to_string(n);
      auto* set = static_cast<redisReply*>(redisCommand(c, "SET %s %s", key.c_str(), value.c_str()));
      auto* get = static_cast<redisReply*>(redisCommand(c, "GET %s", key.c_str()));
      // BLPOP on an empty list waits 20 ms in the server, then answers nil.
      auto* blpop = static_cast<redisReply*>(redisCommand(c, "BLPOP empty:%d 0.02", i));
      const bool good = set && set->type == REDIS_REPLY_STATUS && get && get->type == REDIS_REPLY_STRING &&
                        value == std::string(get->str, get->len) && blpop &&
                        (blpop->type == REDIS_REPLY_NIL || (blpop->type == REDIS_REPLY_ARRAY && blpop->elements == 0));
      (good ? ok : bad)++;
      if (set) freeReplyObject(set);
      if (get) freeReplyObject(get);
      if (blpop) freeReplyObject(blpop);
      if (c->err) break;
    }
    redisFree(c);
    return {ok, bad};
  });
  expect_no_pinning(o);
}

size_t append_body(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

TEST(BlockingClientsTest, LibcurlEasyRequestsPark) {
  const std::string base = env("BOBBIN_TEST_HTTP_URL");
  ASSERT_FALSE(base.empty());
  curl_global_init(CURL_GLOBAL_DEFAULT);
  outcome o = run_clients([&](int, const std::function<bool()>& keep_going) -> std::pair<long, long> {
    long ok = 0, bad = 0;
    CURL* h = curl_easy_init();
    std::string body;
    const std::string url = base + "/sleep?ms=20";
    curl_easy_setopt(h, CURLOPT_URL, url.c_str());
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, append_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 30L);
    while (keep_going()) {
      body.clear();
      CURLcode rc = curl_easy_perform(h);
      long status = 0;
      curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
      const bool good = rc == CURLE_OK && status == 200 && body == "slept 20 ms\n";
      (good ? ok : bad)++;
    }
    curl_easy_cleanup(h);
    return {ok, bad};
  });
  curl_global_cleanup();
  expect_no_pinning(o);
}

// One HTTPS GET through libcurl with OpenSSL 3 on a new handle, so a new
// connection and a full TLS handshake each time, verified against the
// private server's certificate. True when the server echoed `path`.
// Under the sanitizers a handshake costs 5-20 times the CPU (TSan: 50
// fibers kept the bystander 1.8 s late, every handshake a CPU pin): a few.
constexpr int kHttpsFibers = kSanitized ? 4 : 50;

bool https_get(const std::string& base, const std::string& ca, const std::string& path) {
  CURL* h = curl_easy_init();
  std::string body;
  const std::string url = base + path;
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(h, CURLOPT_CAINFO, ca.c_str());
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, append_body);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &body);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_FORBID_REUSE, 1L);
  curl_easy_setopt(h, CURLOPT_TIMEOUT, 60L);
  char error[CURL_ERROR_SIZE] = "";
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, error);
  const CURLcode rc = curl_easy_perform(h);
  long status = 0;
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_cleanup(h);
  const bool good = rc == CURLE_OK && status == 200 && body == path;
  // The first failure says why (a bad reply fails the test; this names it).
  static std::atomic<bool> told{false};
  if (!good && !told.exchange(true)) {
    std::printf("  first bad HTTPS reply: %s (curl %d: %s), status %ld, body %zu bytes\n", path.c_str(),
                static_cast<int>(rc), error[0] != 0 ? error : curl_easy_strerror(rc), status, body.size());
  }
  return good;
}

TEST(BlockingClientsTest, LibcurlHttpsWithANewHandshakeEachCallParks) {
  // OpenSSL 3 takes pthread reader-writer locks inside every handshake (its
  // provider and object stores) and std::mutex-like locks beside them; with
  // glibc's rwlock a fiber waiting for one blocked its carrier. 50 fibers,
  // each call a new TLS connection to a private HTTPS server (Python's
  // ssl, OpenSSL 3 too) verified against its certificate. 50, not 200: a
  // handshake is about a millisecond of CPU on the fiber, and fibers are not
  // preempted, so the bystander's wake waits behind every runnable
  // handshake on its carrier (200 fibers: p99 87 ms, near this test's
  // bound; 50: 8-15 ms, with as many handshakes a second, the Python
  // server being the bound).
  const std::string base = env("BOBBIN_TEST_HTTPS_URL"), ca = env("BOBBIN_TEST_HTTPS_CA");
  ASSERT_FALSE(base.empty());
  curl_global_init(CURL_GLOBAL_DEFAULT);
  outcome o = run_clients([&](int i, const std::function<bool()>& keep_going) -> std::pair<long, long> {
    long ok = 0, bad = 0;
    for (long n = 0; keep_going(); n++) {
      (https_get(base, ca, "/fiber-" + std::to_string(i) + "-" + std::to_string(n)) ? ok : bad)++;
    }
    return {ok, bad};
  }, kHttpsFibers);
  curl_global_cleanup();
  expect_no_pinning(o);
}

// OpenSSL keeps its error queue per thread, in a pthread key; bobbin makes
// libcrypto's keys per fiber (runtime/fiber/fiber_keys.h), so a fiber that
// parks with errors queued (as one waiting for OpenSSL's rwlocks inside
// certificate loading does, between its ERR_set_mark and ERR_pop_to_mark)
// finds its own errors, and only its own, when it resumes, while other
// fibers of its carrier raised and cleared theirs meanwhile. Before, 1 HTTPS
// call in ~160 under TSan failed with "error setting certificate file".
// Under AddressSanitizer the per-fiber queues are also shown freed when the
// fibers end (a leak fails the run).
TEST(BlockingClientsTest, OpenSslErrorQueueIsEachFibersOwn) {
  auto rt = bobbin::runtime::start({.carriers = 2}).value();
  std::atomic<long> wrong{0}, checked{0};
  std::vector<bobbin::fiber<>> fs;
  for (int i = 0; i < 200; i++) {
    fs.push_back(rt->spawn([&, i] {
      if (ERR_peek_error() != 0) wrong++;  // a new fiber's queue is empty
      for (int round = 0; round < 20; round++) {
        const int base = 1 + i, reason = 1000 + (i * 20 + round) % 3000;
        ERR_raise(ERR_LIB_USER, base);  // a mark sits on an error: on an empty queue there is none
        ERR_set_mark();
        ERR_raise(ERR_LIB_USER, reason);
        bobbin::this_fiber::sleep_for(std::chrono::microseconds(100 * (1 + round % 3)));
        if (ERR_GET_REASON(ERR_peek_last_error()) != reason) wrong++;
        if (ERR_pop_to_mark() != 1) wrong++;  // the mark is still there: nobody popped it
        bobbin::this_fiber::yield();
        // Only this fiber's base error is left.
        if (ERR_GET_REASON(ERR_get_error()) != base || ERR_get_error() != 0) wrong++;
        checked++;
      }
      ERR_raise(ERR_LIB_USER, 1);  // left queued: freed with the fiber
    }));
  }
  for (auto& f : fs) f.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(checked.load(), 200 * 20);
  EXPECT_EQ(ERR_peek_error(), 0u) << "the fibers' errors leaked into the main thread's queue";
}

#if BOBBIN_HAVE_SPDLOG
TEST(BlockingClientsTest, OneServiceMixingTheFourLibrariesParksInEach) {
  // As a user's service mixes them: 100 fibers, a quarter each logging
  // through spdlog's asynchronous logger, calling an HTTPS endpoint through
  // libcurl + OpenSSL 3 (a new handshake each time), waiting on a
  // std::future a thread pool fulfils, and querying PostgreSQL through a
  // pool of 8 libpq connections behind std::mutex + std::condition_variable,
  // every one logging its result too. Every result checked, every log line
  // in the file, nothing pinned. (100 fibers, not 200: 50 making TLS
  // handshakes, CPU work that is not preempted, kept the bystander's p99
  // near 80 ms; see LibcurlHttpsWithANewHandshakeEachCallParks.)
  const std::string conninfo = env("BOBBIN_TEST_PG"), base = env("BOBBIN_TEST_HTTPS_URL"),
                    ca = env("BOBBIN_TEST_HTTPS_CA");
  ASSERT_FALSE(conninfo.empty());
  ASSERT_FALSE(base.empty());
  const std::string path = ::testing::TempDir() + "bobbin_mix_" + std::to_string(::getpid()) + ".log";
  pg_pool pool(conninfo, 8);
  ASSERT_EQ(pool.size(), 8u);
  bobbin::testing::delayed_pool futures(4, 5ms);  // a result from a thread pool, 5 ms later
  curl_global_init(CURL_GLOBAL_DEFAULT);
  spdlog::init_thread_pool(1024, 1);
  auto logger = spdlog::basic_logger_mt<spdlog::async_factory>("bobbin_mix", path, /*truncate=*/true);
  logger->set_pattern("%v");
  std::atomic<long> lines{0};
  outcome o = run_clients([&](int i, const std::function<bool()>& keep_going) -> std::pair<long, long> {
    long ok = 0, bad = 0;
    for (long n = 0; keep_going(); n++) {
      bool good = false;
      switch (i % 4) {
        case 0:
          logger->info("fiber {} plain line {}", i, n);
          lines++;
          good = true;
          bobbin::this_fiber::sleep_for(1ms);
          break;
        case 1:
          good = https_get(base, ca, "/mix-" + std::to_string(i) + "-" + std::to_string(n));
          bobbin::this_fiber::sleep_for(5ms);  // a service's outbound calls come between requests
          break;
        case 2: {
          const long v = i * 1'000'000L + n;
          good = futures.submit(v).get() == v + 1;
          break;
        }
        case 3: {
          auto [qok, qbad] = query_through_pool(pool, i, [first = true]() mutable { return std::exchange(first, false); });
          good = qok == 1 && qbad == 0;
          break;
        }
      }
      logger->info("fiber {} result {} {}", i, n, good ? "ok" : "bad");
      lines++;
      (good ? ok : bad)++;
    }
    return {ok, bad};
  }, kSanitized ? 16 : kFibers / 2);  // a few under the sanitizers, as kHttpsFibers
  logger->flush();
  spdlog::shutdown();
  curl_global_cleanup();
  expect_no_pinning(o);
  long in_file = 0;
  if (std::FILE* f = std::fopen(path.c_str(), "r")) {
    char buf[128];
    while (std::fgets(buf, sizeof buf, f) != nullptr) in_file++;
    std::fclose(f);
  }
  std::remove(path.c_str());
  EXPECT_EQ(in_file, lines.load());
  std::printf("  %ld results, %ld log lines\n", o.ok, in_file);
}
#endif

// Cancelling a fiber inside an unmodified library's blocking call: the libc
// call it is parked in fails with ECANCELED, and each library reports a
// failed call promptly instead of hanging or spinning. `call` returns a
// description of its outcome; `failed` says whether that is the clean
// failure expected.
void expect_cancel_fails_the_call(const char* what, const std::function<std::string()>& call,
                                  const std::function<bool(const std::string&)>& failed) {
  auto rt = bobbin::runtime::start({.carriers = 2}).value();
  std::atomic<bool> entered{false};
  auto f = rt->spawn([&] {
    entered = true;
    return call();
  });
  while (!entered) std::this_thread::sleep_for(1ms);
  std::this_thread::sleep_for(300ms);  // well inside the library's wait
  const auto asked = clock_type::now();
  f.request_stop();
  const std::string result = f.join();
  const auto took = clock_type::now() - asked;
  std::printf("  %s, cancelled: %s (%.1f ms)\n", what, result.c_str(),
              std::chrono::duration<double, std::milli>(took).count());
  EXPECT_TRUE(failed(result)) << what << ": " << result;
  EXPECT_LT(took, 1s) << what;
}

TEST(BlockingClientsTest, CancellingAFiberInsideALibraryCallFailsTheCallPromptly) {
  const std::string conninfo = env("BOBBIN_TEST_PG");
  const std::string sock = env("BOBBIN_TEST_REDIS_SOCKET");
  const std::string base = env("BOBBIN_TEST_HTTP_URL");
  ASSERT_FALSE(conninfo.empty() || sock.empty() || base.empty());
  expect_cancel_fails_the_call(
      "libpq PQexec(SELECT pg_sleep(3))",
      [&] {
        PGconn* conn = PQconnectdb(conninfo.c_str());
        if (PQstatus(conn) != CONNECTION_OK) return std::string("connect failed: ") + PQerrorMessage(conn);
        PGresult* r = PQexec(conn, "SELECT pg_sleep(3)");
        std::string out = std::string(PQresStatus(PQresultStatus(r))) + ": " + PQerrorMessage(conn);
        PQclear(r);
        PQfinish(conn);
        return out;
      },
      [](const std::string& r) { return r.rfind("PGRES_FATAL_ERROR", 0) == 0; });
  expect_cancel_fails_the_call(
      "hiredis BLPOP (10 s)",
      [&] {
        redisContext* c = redisConnectUnix(sock.c_str());
        if (c == nullptr || c->err) return std::string("connect failed");
        auto* reply = static_cast<redisReply*>(redisCommand(c, "BLPOP cancel:empty 10"));
        std::string out = reply == nullptr ? "no reply, err " + std::to_string(c->err) + ": " + c->errstr : "a reply";
        if (reply) freeReplyObject(reply);
        redisFree(c);
        return out;
      },
      [](const std::string& r) { return r.rfind("no reply, err ", 0) == 0; });
  curl_global_init(CURL_GLOBAL_DEFAULT);
  expect_cancel_fails_the_call(
      "libcurl GET /sleep?ms=3000",
      [&] {
        CURL* h = curl_easy_init();
        std::string body;
        const std::string url = base + "/sleep?ms=3000";
        curl_easy_setopt(h, CURLOPT_URL, url.c_str());
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, append_body);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &body);
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        CURLcode rc = curl_easy_perform(h);
        curl_easy_cleanup(h);
        return std::string(rc == CURLE_OK ? "CURLE_OK" : "error: ") + (rc == CURLE_OK ? "" : curl_easy_strerror(rc));
      },
      [](const std::string& r) { return r.rfind("error: ", 0) == 0; });
  curl_global_cleanup();
}

TEST(BlockingClientsTest, GetaddrinfoParks) {
  outcome o = run_clients([](int, const std::function<bool()>& keep_going) -> std::pair<long, long> {
    long ok = 0, bad = 0;
    while (keep_going()) {
      addrinfo hints{};
      hints.ai_family = AF_INET;
      hints.ai_socktype = SOCK_STREAM;
      addrinfo* res = nullptr;
      const bool good = getaddrinfo("localhost", "5432", &hints, &res) == 0 && res != nullptr &&
                        reinterpret_cast<sockaddr_in*>(res->ai_addr)->sin_addr.s_addr == htonl(INADDR_LOOPBACK) &&
                        ntohs(reinterpret_cast<sockaddr_in*>(res->ai_addr)->sin_port) == 5432;
      if (res) freeaddrinfo(res);
      (good ? ok : bad)++;
    }
    return {ok, bad};
  });
  expect_no_pinning(o);
}

TEST(BlockingClientsTest, UsleepParks) {
  outcome o = run_clients([](int, const std::function<bool()>& keep_going) -> std::pair<long, long> {
    long ok = 0, bad = 0;
    while (keep_going()) {
      auto t = clock_type::now();
      usleep(20000);
      (clock_type::now() - t >= 20ms ? ok : bad)++;
    }
    return {ok, bad};
  });
  expect_no_pinning(o);
}

TEST(BlockingClientsTest, StdSleepForParks) {
  outcome o = run_clients([](int, const std::function<bool()>& keep_going) -> std::pair<long, long> {
    long ok = 0, bad = 0;
    while (keep_going()) {
      auto t = clock_type::now();
      std::this_thread::sleep_for(20ms);
      (clock_type::now() - t >= 20ms ? ok : bad)++;
    }
    return {ok, bad};
  });
  expect_no_pinning(o);
}

// Stack high-water of a real client's calls on a fiber. The fiber runs on
// a fresh runtime with 1 MiB stacks, whose untouched pages read as zeros, so
// the lowest non-zero word below the fiber's first frame marks how deep the
// calls went.
__attribute__((noinline)) size_t deepest_use(const char* top, size_t stack_size) {
  const char* low = top - (stack_size - 16 * 1024);  // clear of the guard page
  for (auto* p = reinterpret_cast<const uint64_t*>(low); reinterpret_cast<const char*>(p) < top; p++) {
    if (*p != 0) return static_cast<size_t>(top - reinterpret_cast<const char*>(p));
  }
  return 0;
}

size_t stack_high_water(const std::function<bool()>& calls) {
  constexpr size_t kStack = 1 << 20;
  bobbin::runtime_options o;
  o.carriers = 1;
  o.stack_size = kStack;
  auto rt = bobbin::runtime::start(o).value();
  return rt->spawn([&] {
      volatile char marker = 0;
      const char* top = const_cast<const char*>(&marker);
      EXPECT_TRUE(calls());
      return deepest_use(top, kStack);
    }).join();
}

TEST(BlockingClientsTest, StackHighWaterFitsTheDefaultStack) {
  if (kSanitized) GTEST_SKIP() << "sanitizer frames are several times larger (their stacks are too)";
  const std::string conninfo = env("BOBBIN_TEST_PG"), sock = env("BOBBIN_TEST_REDIS_SOCKET"),
                    base = env("BOBBIN_TEST_HTTP_URL");
  struct probe {
    const char* what;
    std::function<bool()> calls;
  };
  std::vector<probe> probes = {
      {"libpq PQconnectdb + PQexec + PQfinish",
       [&] {
         PGconn* c = PQconnectdb(conninfo.c_str());
         PGresult* r = PQexec(c, "SELECT pg_sleep(0.001), 'x'");
         bool ok = PQresultStatus(r) == PGRES_TUPLES_OK;
         PQclear(r);
         PQfinish(c);
         return ok;
       }},
      {"hiredis redisConnectUnix + SET + GET",
       [&] {
         redisContext* c = redisConnectUnix(sock.c_str());
         auto* a = static_cast<redisReply*>(redisCommand(c, "SET hw 1"));
         auto* b = static_cast<redisReply*>(redisCommand(c, "GET hw"));
         bool ok = a && b && b->type == REDIS_REPLY_STRING;
         if (a) freeReplyObject(a);
         if (b) freeReplyObject(b);
         redisFree(c);
         return ok;
       }},
      {"libcurl easy GET (new handle, connect, request, cleanup)",
       [&] {
         CURL* h = curl_easy_init();
         std::string body;
         const std::string url = base + "/sleep?ms=1";
         curl_easy_setopt(h, CURLOPT_URL, url.c_str());
         curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, append_body);
         curl_easy_setopt(h, CURLOPT_WRITEDATA, &body);
         curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
         bool ok = curl_easy_perform(h) == CURLE_OK && body == "slept 1 ms\n";
         curl_easy_cleanup(h);
         return ok;
       }},
      {"libcurl easy HTTPS GET, OpenSSL 3 (new handle, connect, TLS handshake, verify, request, cleanup)",
       [&] { return https_get(env("BOBBIN_TEST_HTTPS_URL"), env("BOBBIN_TEST_HTTPS_CA"), "/high-water"); }},
      {"getaddrinfo(\"localhost\") (the lookup itself runs on the blocking pool)",
       [] {
         addrinfo* res = nullptr;
         bool ok = getaddrinfo("localhost", "80", nullptr, &res) == 0;
         if (res) freeaddrinfo(res);
         return ok;
       }},
  };
  for (auto& p : probes) {
    size_t used = stack_high_water(p.calls);
    std::printf("  stack high-water: %6zu bytes  %s\n", used, p.what);
    // The default stack is 64 KiB: keep a quarter of it spare.
    EXPECT_LT(used, 48u * 1024) << p.what;
    EXPECT_GT(used, 0u) << p.what;
  }
}

}  // namespace
