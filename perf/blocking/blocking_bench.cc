// One cell of the blocking-libraries comparison (compare_blocking.py runs
// them all): N callers making one real client's blocking call in a loop for
// a fixed time, every reply checked, run one of four ways:
//   intercept  fibers on 2 carriers, the naive blocking code (bobbin's
//              interceptors park the fiber)
//   pinned     the same with runtime_options::intercept_blocking_calls off:
//              each call blocks its carrier (what bobbin did before)
//   offload    interception off, every call wrapped in bobbin::offload (the
//              run_in_executor workaround)
//   threads    N plain OS threads (8 MiB default stacks), the naive code
//   hogspares  intercept, with runtime_options::spares_for_cpu_hogs on
// (--carriers N: carriers for the fiber ways, 2 by default.)
// Beside the callers a bystander (a fiber, or a thread for `threads`)
// sleeps 5 ms in a loop and records how late it wakes.
//
// Prints one JSON object: calls/s, bad replies, bystander p99, pin events,
// and the process's resident memory at the end of the run (VmRSS).
//
// Clients: pq (a connection per caller), pqpool (all callers share 8
// connections behind a std::mutex and a std::condition_variable, the most
// common shape of a C++ connection pool), redis, curl, https (libcurl with
// OpenSSL 3, a new handle and TLS handshake per call), and future: a
// std::future that a pool of 4 plain threads fulfils 20 ms after the call
// (a result from a thread pool; std::future waits on a shared futex, which
// bobbin's syscall interposer parks the fiber on, issue 32), and shared: a
// std::shared_mutex every caller holds shared across a 1 ms sleep
// (bobbin::this_fiber::sleep_for, which is std::this_thread::sleep_for on a
// plain thread), every 50th call exclusive (issue 33: glibc's rwlock hung
// fibers there; bobbin's own parks them), and spdlog: one line through
// spdlog's asynchronous logger (a bounded queue behind a std::mutex and a
// std::condition_variable, one worker thread writing a file), and mix: the
// last four in one program (mix_caller).
//
//   blocking_bench --client pq|pqpool|redis|curl|https|future|shared|spdlog|mix --mode intercept|pinned|offload|threads
//                  [--callers 200] [--seconds 3]
// The servers are named by BOBBIN_TEST_PG, BOBBIN_TEST_REDIS_SOCKET,
// BOBBIN_TEST_HTTP_URL and BOBBIN_TEST_HTTPS_URL with BOBBIN_TEST_HTTPS_CA
// (tests/clients/servers.py starts them).
#include <curl/curl.h>
#include <hiredis/hiredis.h>
#include <libpq-fe.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <future>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include "bobbin/bobbin.h"

#if BOBBIN_HAVE_SPDLOG
#include <unistd.h>

#include <spdlog/async.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/spdlog.h>
#endif

namespace {

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

const char* need_env(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr) {
    std::fprintf(stderr, "blocking_bench: %s is not set\n", name);
    std::exit(2);
  }
  return v;
}

// One caller's connection and its call. call() returns whether the reply
// was right.
class caller {
 public:
  virtual ~caller() = default;
  virtual bool connect() = 0;
  virtual bool call(long n) = 0;
};

class pq_caller final : public caller {
 public:
  explicit pq_caller(int id) : id_(id) {}
  ~pq_caller() override {
    if (conn_) PQfinish(conn_);
  }
  bool connect() override {
    conn_ = PQconnectdb(need_env("BOBBIN_TEST_PG"));
    return PQstatus(conn_) == CONNECTION_OK;
  }
  bool call(long n) override {
    const std::string tag = std::to_string(id_) + ":" + std::to_string(n);
    const std::string sql = "SELECT pg_sleep(0.02), '" + tag + "'";
    PGresult* r = PQexec(conn_, sql.c_str());
    bool ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && tag == PQgetvalue(r, 0, 1);
    PQclear(r);
    return ok;
  }

 private:
  int id_;
  PGconn* conn_ = nullptr;
};

// 8 connections shared by every caller: take one (waiting on a
// std::condition_variable while none is free), query, give it back.
class pq_pool {
 public:
  static constexpr int kConnections = 8;
  static pq_pool& instance() {
    static pq_pool pool;  // constructed before any caller runs (main)
    return pool;
  }
  // Connects the pool once; false if that failed.
  bool open() {
    std::lock_guard l(mu_);
    if (!opened_) {
      opened_ = true;
      for (int i = 0; i < kConnections; i++) {
        PGconn* c = PQconnectdb(need_env("BOBBIN_TEST_PG"));
        if (PQstatus(c) != CONNECTION_OK) {
          PQfinish(c);
          continue;
        }
        free_.push_back(c);
      }
      ok_ = free_.size() == kConnections;
    }
    return ok_;
  }
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
  bool opened_ = false;
  bool ok_ = false;
};

class pq_pool_caller final : public caller {
 public:
  explicit pq_pool_caller(int id) : id_(id) {}
  bool connect() override { return pq_pool::instance().open(); }
  bool call(long n) override {
    const std::string tag = std::to_string(id_) + ":" + std::to_string(n);
    const std::string sql = "SELECT pg_sleep(0.02), '" + tag + "'";
    PGconn* conn = pq_pool::instance().take();
    PGresult* r = PQexec(conn, sql.c_str());
    bool ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && tag == PQgetvalue(r, 0, 1);
    PQclear(r);
    pq_pool::instance().give(conn);
    return ok;
  }

 private:
  int id_;
};

class redis_caller final : public caller {
 public:
  explicit redis_caller(int id) : key_("bench:" + std::to_string(id)) {}
  ~redis_caller() override {
    if (c_) redisFree(c_);
  }
  bool connect() override {
    c_ = redisConnectUnix(need_env("BOBBIN_TEST_REDIS_SOCKET"));
    return c_ != nullptr && c_->err == 0;
  }
  bool call(long n) override {
    const std::string v = std::to_string(n);
    auto* set = static_cast<redisReply*>(redisCommand(c_, "SET %s %s", key_.c_str(), v.c_str()));
    auto* get = static_cast<redisReply*>(redisCommand(c_, "GET %s", key_.c_str()));
    bool ok = set && set->type == REDIS_REPLY_STATUS && get && get->type == REDIS_REPLY_STRING &&
              v == std::string(get->str, get->len);
    if (set) freeReplyObject(set);
    if (get) freeReplyObject(get);
    return ok;
  }

 private:
  std::string key_;
  redisContext* c_ = nullptr;
};

size_t append_body(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

class curl_caller final : public caller {
 public:
  ~curl_caller() override {
    if (h_) curl_easy_cleanup(h_);
  }
  bool connect() override {
    h_ = curl_easy_init();
    url_ = std::string(need_env("BOBBIN_TEST_HTTP_URL")) + "/sleep?ms=20";
    curl_easy_setopt(h_, CURLOPT_URL, url_.c_str());
    curl_easy_setopt(h_, CURLOPT_WRITEFUNCTION, append_body);
    curl_easy_setopt(h_, CURLOPT_WRITEDATA, &body_);
    curl_easy_setopt(h_, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h_, CURLOPT_TIMEOUT, 30L);
    return h_ != nullptr;
  }
  bool call(long) override {
    body_.clear();
    long status = 0;
    CURLcode rc = curl_easy_perform(h_);
    curl_easy_getinfo(h_, CURLINFO_RESPONSE_CODE, &status);
    return rc == CURLE_OK && status == 200 && body_ == "slept 20 ms\n";
  }

 private:
  CURL* h_ = nullptr;
  std::string url_;
  std::string body_;
};

// One HTTPS GET per call on a new handle: a new TCP connection and a full
// TLS 1.3 handshake (OpenSSL 3, an ECDSA P-256 certificate verified against
// the CA file), to the private TLS server; the reply echoes the path.
// OpenSSL takes its pthread rwlocks inside each handshake (bobbin's own:
// issue 33) and keeps its error queue in pthread keys (per fiber).
class https_caller final : public caller {
 public:
  explicit https_caller(int id) : prefix_("/bench-" + std::to_string(id) + "-") {}
  bool connect() override {
    base_ = need_env("BOBBIN_TEST_HTTPS_URL");
    ca_ = need_env("BOBBIN_TEST_HTTPS_CA");
    return true;
  }
  bool call(long n) override {
    CURL* h = curl_easy_init();
    if (h == nullptr) return false;
    const std::string path = prefix_ + std::to_string(n), url = base_ + path;
    std::string body;
    curl_easy_setopt(h, CURLOPT_URL, url.c_str());
    curl_easy_setopt(h, CURLOPT_CAINFO, ca_.c_str());
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, append_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_FORBID_REUSE, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 60L);
    const CURLcode rc = curl_easy_perform(h);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(h);
    return rc == CURLE_OK && status == 200 && body == path;
  }

 private:
  std::string prefix_, base_, ca_;
};

// Fulfils each promise 20 ms after it was handed over, on one of 4 plain
// threads.
class delayed_pool {
 public:
  static delayed_pool& instance() {
    static delayed_pool pool;  // constructed before any caller runs (main)
    return pool;
  }
  std::future<long> submit(long v) {
    std::promise<long> p;
    auto f = p.get_future();
    {
      std::lock_guard l(mu_);
      jobs_.push_back(job{clock_type::now() + 20ms, v, std::move(p)});
    }
    cv_.notify_one();
    return f;
  }

 private:
  struct job {
    clock_type::time_point due;
    long value;
    std::promise<long> promise;
  };
  delayed_pool() {
    for (int i = 0; i < 4; i++) {
      std::thread([this] { run(); }).detach();  // lives as long as the process
    }
  }
  void run() {
    std::unique_lock l(mu_);
    for (;;) {
      cv_.wait(l, [&] { return !jobs_.empty(); });
      job j = std::move(jobs_.front());
      jobs_.pop_front();
      l.unlock();
      std::this_thread::sleep_until(j.due);
      j.promise.set_value(j.value + 1);
      l.lock();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<job> jobs_;
};

class future_caller final : public caller {
 public:
  explicit future_caller(int id) : id_(id) {}
  bool connect() override { return true; }
  bool call(long n) override {
    const long v = id_ * 1'000'000L + n;
    return delayed_pool::instance().submit(v).get() == v + 1;
  }

 private:
  int id_;
};

// One std::shared_mutex for every caller. A reader checks that the two
// halves a writer updates together agree (a torn pair is a bad reply).
class shared_caller final : public caller {
 public:
  bool connect() override { return true; }
  bool call(long n) override {
    if (n % 50 == 49) {
      std::unique_lock l(mu);
      const long v = a;
      bobbin::this_fiber::sleep_for(1ms);
      a = v + 1;
      b = v + 1;
      return true;
    }
    std::shared_lock l(mu);
    const long x = a;
    bobbin::this_fiber::sleep_for(1ms);
    return b == x;
  }

 private:
  static inline std::shared_mutex mu;
  static inline long a = 0, b = 0;
};

#if BOBBIN_HAVE_SPDLOG
// One asynchronous logger for every caller, made in main before any runs.
class spdlog_caller final : public caller {
 public:
  explicit spdlog_caller(int id) : id_(id) {}
  static void open() {
    spdlog::init_thread_pool(8192, 1);  // spdlog's default queue
    const std::string path = "/tmp/blocking_bench_spdlog_" + std::to_string(::getpid()) + ".log";
    logger = spdlog::basic_logger_mt<spdlog::async_factory>("blocking_bench", path, /*truncate=*/true);
    logger->set_pattern("%v");
    std::remove(path.c_str());  // the worker keeps writing to the open file; nothing is left behind
  }
  bool connect() override { return true; }
  bool call(long n) override {
    logger->info("caller {} line {}", id_, n);
    return true;
  }
  static inline std::shared_ptr<spdlog::logger> logger;

 private:
  int id_;
};

// The four in one program, as a service would mix them (the same as
// tests/clients' OneServiceMixingTheFourLibrariesParksInEach): a quarter of
// the callers each log a line and sleep 1 ms, make an HTTPS call and sleep
// 5 ms (a service's outbound calls come between requests), wait on a
// future from the pool of 4 threads, or query PostgreSQL through the pool
// of 8; every caller logs its result. The sleeps are
// bobbin::this_fiber::sleep_for (std::this_thread's on a thread).
class mix_caller final : public caller {
 public:
  explicit mix_caller(int id) : id_(id), kind_(id % 4) {
    if (kind_ == 1) inner_ = std::make_unique<https_caller>(id);
    else if (kind_ == 2) inner_ = std::make_unique<future_caller>(id);
    else if (kind_ == 3) inner_ = std::make_unique<pq_pool_caller>(id);
  }
  bool connect() override { return inner_ == nullptr || inner_->connect(); }
  bool call(long n) override {
    bool good = true;
    const auto t0 = clock_type::now();
    auto slept = std::chrono::microseconds(0);
    if (kind_ == 0) {
      spdlog_caller::logger->info("caller {} plain line {}", id_, n);
      slept = 1ms;
    } else {
      good = inner_->call(n);
      if (kind_ == 1) slept = 5ms;
    }
    const auto t1 = clock_type::now();
    if (slept.count() > 0) bobbin::this_fiber::sleep_for(slept);
    const auto t2 = clock_type::now();
    spdlog_caller::logger->info("caller {} result {} {}", id_, n, good ? "ok" : "bad");
    const auto t3 = clock_type::now();
    calls_by_kind[kind_].fetch_add(1, std::memory_order_relaxed);
    add_us(kind_, 0, t1 - t0);
    add_us(kind_, 1, t2 - t1 - slept);
    add_us(kind_, 2, t3 - t2);
    return good;
  }
  // Calls made, per kind: log, https, future, pool (printed with the result).
  static inline std::atomic<long> calls_by_kind[4] = {};
  // Where a kind's calls spend their time, summed in microseconds: the call
  // itself (kind 0: its log line), the sleep beyond what was asked (a
  // woken sleeper waiting for its turn), the result's log line.
  static inline std::atomic<long> us_by_kind_step[4][3] = {};

 private:
  static void add_us(int kind, int step, clock_type::duration d) {
    us_by_kind_step[kind][step].fetch_add(std::chrono::duration_cast<std::chrono::microseconds>(d).count(),
                                          std::memory_order_relaxed);
  }

 public:

 private:
  int id_, kind_;
  std::unique_ptr<caller> inner_;
};
#endif

std::unique_ptr<caller> make_caller(const std::string& client, int id) {
  if (client == "pq") return std::make_unique<pq_caller>(id);
  if (client == "pqpool") return std::make_unique<pq_pool_caller>(id);
  if (client == "redis") return std::make_unique<redis_caller>(id);
  if (client == "curl") return std::make_unique<curl_caller>();
  if (client == "https") return std::make_unique<https_caller>(id);
  if (client == "future") return std::make_unique<future_caller>(id);
  if (client == "shared") return std::make_unique<shared_caller>();
#if BOBBIN_HAVE_SPDLOG
  if (client == "spdlog") return std::make_unique<spdlog_caller>(id);
  if (client == "mix") return std::make_unique<mix_caller>(id);
#endif
  std::fprintf(stderr, "blocking_bench: unknown --client %s\n", client.c_str());
  std::exit(2);
}

// The mix client's calls of one kind (0 for the other clients).
double by_kind(int kind) {
#if BOBBIN_HAVE_SPDLOG
  return static_cast<double>(mix_caller::calls_by_kind[kind].load());
#else
  return 0 * kind;
#endif
}

// The mix client's mean microseconds per call of one kind in one step
// (mix_caller::us_by_kind_step; 0 for the other clients).
double us_per_call(int kind, int step) {
#if BOBBIN_HAVE_SPDLOG
  const long calls = mix_caller::calls_by_kind[kind].load();
  return calls == 0 ? 0 : static_cast<double>(mix_caller::us_by_kind_step[kind][step].load()) / calls;
#else
  return 0 * kind * step;
#endif
}

long rss_kb() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
  }
  return -1;
}

struct tally {
  std::atomic<long> ok{0}, bad{0}, connect_failures{0};
};

// The loop every caller runs, whatever runs it.
template <class Call>
void caller_loop(const std::string& client, int id, const std::atomic<bool>& stop, tally& t, Call&& wrap) {
  auto c = make_caller(client, id);
  if (!wrap([&] { return c->connect(); })) {
    t.connect_failures++;
    return;
  }
  for (long n = 0; !stop.load(std::memory_order_relaxed); n++) {
    (wrap([&] { return c->call(n); }) ? t.ok : t.bad)++;
  }
  wrap([&] {
    c.reset();
    return true;
  });
}

std::vector<double> bystander_loop(const std::atomic<bool>& stop, bool fiber) {
  std::vector<double> late;
  late.reserve(1 << 16);  // no allocation (and allocator lock) inside the measured loop
  while (!stop.load(std::memory_order_relaxed)) {
    auto t = clock_type::now();
    if (fiber) bobbin::this_fiber::sleep_for(5ms);
    else std::this_thread::sleep_for(5ms);
    late.push_back(std::chrono::duration<double, std::milli>(clock_type::now() - t - 5ms).count());
  }
  return late;
}

}  // namespace

int main(int argc, char** argv) {
  std::string client, mode;
  int callers = 200;
  unsigned carriers = 2;
  double seconds = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--client") client = argv[i + 1];
    else if (a == "--mode") mode = argv[i + 1];
    else if (a == "--callers") callers = std::atoi(argv[i + 1]);
    else if (a == "--seconds") seconds = std::atof(argv[i + 1]);
    else if (a == "--carriers") carriers = static_cast<unsigned>(std::atoi(argv[i + 1]));
  }
  if (client.empty() || mode.empty()) {
    std::fprintf(stderr, "usage: blocking_bench --client pq|pqpool|redis|curl|https|future|shared|spdlog|mix --mode intercept|pinned|offload|threads|hogspares [--carriers N]\n");
    return 2;
  }
  pq_pool::instance();
  if (client == "future" || client == "mix") delayed_pool::instance();
#if BOBBIN_HAVE_SPDLOG
  if (client == "spdlog" || client == "mix") spdlog_caller::open();
#endif
  curl_global_init(CURL_GLOBAL_DEFAULT);
  tally t;
  std::atomic<bool> stop{false};
  std::vector<double> late;
  uint64_t pin_events = 0, parks = 0;
  long rss = 0;
  auto run_for = std::chrono::duration<double>(seconds);
  // The window opens when the callers can start: after runtime::start for
  // the fiber modes (a one-off ~4 ms: carriers, rings, monitor), as the
  // thread pool and the servers are up before it in every mode; spawning
  // the callers, fibers or threads, is inside it.
  auto start = clock_type::now();
  double elapsed = 0;
  if (mode == "threads") {
    std::vector<std::thread> ts;
    std::thread bystander([&] { late = bystander_loop(stop, false); });
    for (int i = 0; i < callers; i++) {
      ts.emplace_back([&, i] { caller_loop(client, i, stop, t, [](auto&& f) { return f(); }); });
    }
    std::this_thread::sleep_for(run_for);
    rss = rss_kb();
    stop = true;
    elapsed = std::chrono::duration<double>(clock_type::now() - start).count();
    for (auto& th : ts) th.join();
    bystander.join();
  } else if (mode == "intercept" || mode == "pinned" || mode == "offload" || mode == "hogspares") {
    bobbin::runtime_options o;
    o.carriers = carriers;
    o.intercept_blocking_calls = mode == "intercept" || mode == "hogspares";
    o.spares_for_cpu_hogs = mode == "hogspares";
    auto rt = bobbin::runtime::start(o).value();
    start = clock_type::now();
    auto bystander = rt->spawn([&] { return bystander_loop(stop, true); });
    std::vector<bobbin::fiber<void>> fs;
    for (int i = 0; i < callers; i++) {
      fs.push_back(rt->spawn([&, i] {
        if (mode == "offload") {
          caller_loop(client, i, stop, t, [](auto&& f) { return bobbin::offload(f); });
        } else {
          caller_loop(client, i, stop, t, [](auto&& f) { return f(); });
        }
      }));
    }
    std::this_thread::sleep_for(run_for);
    rss = rss_kb();
    stop = true;
    elapsed = std::chrono::duration<double>(clock_type::now() - start).count();
    for (auto& f : fs) f.join();
    late = bystander.join();
    auto s = rt->stats();
    pin_events = s.pin_events;
    parks = s.intercepted_parks;
  } else {
    std::fprintf(stderr, "blocking_bench: unknown --mode %s\n", mode.c_str());
    return 2;
  }
  std::sort(late.begin(), late.end());
  const double p99 = late.empty() ? -1 : late[late.size() * 99 / 100];
  std::printf(
      "{\"client\": \"%s\", \"mode\": \"%s\", \"callers\": %d, \"seconds\": %.2f, \"calls_per_s\": %.1f, "
      "\"bad\": %ld, \"connect_failures\": %ld, \"bystander_p99_ms\": %.2f, \"pin_events\": %llu, "
      "\"intercepted_parks\": %llu, \"rss_kb\": %ld, \"by_kind_per_s\": [%.0f, %.0f, %.0f, %.0f], "
      "\"us_per_call_by_kind\": [[%.0f, %.0f, %.0f], [%.0f, %.0f, %.0f], [%.0f, %.0f, %.0f], [%.0f, %.0f, %.0f]]}\n",
      client.c_str(), mode.c_str(), callers, elapsed, static_cast<double>(t.ok.load()) / elapsed, t.bad.load(),
      t.connect_failures.load(), p99, static_cast<unsigned long long>(pin_events),
      static_cast<unsigned long long>(parks), rss, by_kind(0) / elapsed, by_kind(1) / elapsed, by_kind(2) / elapsed,
      by_kind(3) / elapsed, us_per_call(0, 0), us_per_call(0, 1), us_per_call(0, 2), us_per_call(1, 0),
      us_per_call(1, 1), us_per_call(1, 2), us_per_call(2, 0), us_per_call(2, 1), us_per_call(2, 2),
      us_per_call(3, 0), us_per_call(3, 1), us_per_call(3, 2));
  curl_global_cleanup();
  return t.bad.load() == 0 && t.connect_failures.load() == 0 ? 0 : 1;
}
