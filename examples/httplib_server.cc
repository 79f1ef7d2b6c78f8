// examples/httplib_server: cpp-httplib (Debian's libcpp-httplib-dev,
// unmodified) serving every connection on a bobbin fiber through its
// task-queue hook (examples/httplib/fiber_task_queue.h, the whole adapter).
// A blocking HTTP library over a blocking database driver, as a Java
// service runs Tomcat over JDBC on virtual threads: the handlers below are
// plain blocking code, and nothing in cpp-httplib or libpq knows about
// fibers. --threads N runs the same server on cpp-httplib's own pool of N
// threads, for comparison (perf/RESULTS.md).
//
// Routes:
//   GET /hello          "hello\n" at once
//   GET /sleep?ms=N     std::this_thread::sleep_for(N ms), then "slept N ms\n"
//                       (a stand-in for a blocking backend call; 0-10000,
//                       else 400)
//   GET /files/<path>   "file name of N bytes\n" (a route with a (.*) capture)
//   GET /users/<id>     {"id":..,"name":".."} from table httplib_users
//                       (1,000 rows, created at start if missing) through
//                       libpq, with --conninfo; 404 if no such row, 503
//                       with libpq's message if the query fails (the
//                       connection is reset before it is lent again)
// Anything else: cpp-httplib's 404.
//
// Database connections: a pool of --pool N (default 16) PGconn behind a
// std::mutex and a std::condition_variable, the most common shape of a C++
// connection pool; on fibers a request waiting for a connection parks.
//
// Run:  build/examples/httplib_server [--port 8080] [--carriers N]
//         [--threads N] [--conninfo STR] [--pool N] [--no-nodelay]
//         [--keep-alive-max N] [--backlog N] [--stack-kib N]
// It prints "listening on 127.0.0.1:PORT" once bound (connections queue in
// the backlog until the accept loop starts). SIGINT/SIGTERM:
// stop accepting, finish the connections still open, print one line of
// counters (requests, connections served, pin events, spawn retries, peak
// RSS), exit 0.
//
// What to watch for with cpp-httplib (README "Bring your own blocking
// server"): it listens with a backlog of 5 (CPPHTTPLIB_LISTEN_BACKLOG,
// compiled into the library), so 1,000 clients connecting at once would
// see dropped SYNs and one-second retries: the server listens again with
// --backlog (default 4096) once bound. It leaves Nagle's algorithm on
// unless set_tcp_nodelay(true), and closes a keep-alive connection after
// 5 requests unless set_keep_alive_max_count: both are set here, the same
// way in both modes. It matches routes and the Range header with std::regex,
// which recurses per character: fibers get a thread's 8 MiB stack here
// (--stack-kib), or a long header would overflow it and end the process
// (examples/httplib/fiber_task_queue.h).
#include <httplib.h>
#include <libpq-fe.h>
#include <sys/socket.h>

#include <atomic>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "bobbin/bobbin.h"
#include "examples/common/server.h"
#include "examples/httplib/fiber_task_queue.h"

namespace {

constexpr int kUsers = 1000;

// A fixed set of PostgreSQL connections lent out one request at a time,
// with nothing fiber-specific in it.
class pg_pool {
 public:
  ~pg_pool() {
    for (PGconn* c : free_) PQfinish(c);
  }

  bool open(const std::string& conninfo, int size, std::string& error) {
    for (int i = 0; i < size; i++) {
      PGconn* c = PQconnectdb(conninfo.c_str());
      if (PQstatus(c) != CONNECTION_OK) {
        error = PQerrorMessage(c);
        PQfinish(c);
        return false;
      }
      free_.push_back(c);
    }
    return true;
  }

  PGconn* take() {
    std::unique_lock l(mu_);
    available_.wait(l, [this] { return !free_.empty(); });
    PGconn* c = free_.back();
    free_.pop_back();
    return c;
  }

  void give_back(PGconn* c) {
    if (PQstatus(c) != CONNECTION_OK) PQreset(c);
    {
      std::lock_guard l(mu_);
      free_.push_back(c);
    }
    available_.notify_one();
  }

 private:
  std::mutex mu_;
  std::condition_variable available_;
  std::vector<PGconn*> free_;  // guarded by mu_
};

bool create_users(const std::string& conninfo, std::string& error) {
  PGconn* c = PQconnectdb(conninfo.c_str());
  bool ok = PQstatus(c) == CONNECTION_OK;
  if (ok) {
    const std::string sql =
        "SET client_min_messages TO warning;"  // not "relation already exists" on stderr
        "CREATE TABLE IF NOT EXISTS httplib_users (id integer PRIMARY KEY, name text NOT NULL);"
        "INSERT INTO httplib_users SELECT g, 'user ' || g FROM generate_series(1, " +
        std::to_string(kUsers) + ") g ON CONFLICT DO NOTHING;";
    PGresult* r = PQexec(c, sql.c_str());
    ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
  }
  if (!ok) error = PQerrorMessage(c);
  PQfinish(c);
  return ok;
}

// A JSON string's content: quotes, backslashes and control characters escaped.
std::string json_escape(const char* s) {
  std::string out;
  for (; *s != '\0'; s++) {
    const unsigned char ch = static_cast<unsigned char>(*s);
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += static_cast<char>(ch);
    } else if (ch < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", ch);
      out += buf;
    } else {
      out += static_cast<char>(ch);
    }
  }
  return out;
}

// The client ports whose requests reached a handler: how many connections
// were served, which a load generator's request rate does not tell (cpp-httplib's
// default pool answers 8 keep-alive connections quickly and leaves the rest
// waiting). Loopback clients are one address, so a port is a connection.
class client_ports {
 public:
  void mark(int port) {
    if (port < 0 || port > 65535) return;
    std::atomic<uint64_t>& word = bits_[static_cast<unsigned>(port) / 64];
    const uint64_t bit = uint64_t{1} << (port % 64);
    // Read first: after its first reply a connection costs no shared write.
    if ((word.load(std::memory_order_relaxed) & bit) == 0) word.fetch_or(bit, std::memory_order_relaxed);
  }
  long count() const {
    long n = 0;
    for (const auto& w : bits_) n += __builtin_popcountll(w.load(std::memory_order_relaxed));
    return n;
  }

 private:
  std::atomic<uint64_t> bits_[65536 / 64] = {};
};

struct options {
  int port = 8080;
  unsigned carriers = 0;  // 0: one per core
  int threads = 0;        // > 0: cpp-httplib's own pool instead of fibers
  std::string conninfo;
  int pool = 16;
  bool nodelay = true;
  int keep_alive_max = 1000000;
  int backlog = 4096;
  int stack_kib = 8192;
};

bool parse_int(const char* s, int lo, int hi, int& out) {
  const char* end = s + std::strlen(s);
  auto [p, ec] = std::from_chars(s, end, out);
  return ec == std::errc() && p == end && out >= lo && out <= hi;
}

bool parse_args(int argc, char** argv, options& o) {
  for (int i = 1; i < argc; i++) {
    const std::string a = argv[i];
    const bool has_value = i + 1 < argc;
    int n = 0;
    if (a == "--port" && has_value && parse_int(argv[++i], 0, 65535, n)) {
      o.port = n;
    } else if (a == "--carriers" && has_value && parse_int(argv[++i], 1, 1024, n)) {
      o.carriers = static_cast<unsigned>(n);
    } else if (a == "--threads" && has_value && parse_int(argv[++i], 1, 100000, n)) {
      o.threads = n;
    } else if (a == "--conninfo" && has_value) {
      o.conninfo = argv[++i];
    } else if (a == "--pool" && has_value && parse_int(argv[++i], 1, 1000, n)) {
      o.pool = n;
    } else if (a == "--no-nodelay") {
      o.nodelay = false;
    } else if (a == "--keep-alive-max" && has_value && parse_int(argv[++i], 1, 1 << 30, n)) {
      o.keep_alive_max = n;
    } else if (a == "--backlog" && has_value && parse_int(argv[++i], 1, 1 << 20, n)) {
      o.backlog = n;
    } else if (a == "--stack-kib" && has_value && parse_int(argv[++i], 16, 1 << 20, n)) {
      o.stack_kib = n;
    } else {
      return false;
    }
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  if (!parse_args(argc, argv, o)) {
    std::fprintf(stderr,
                 "usage: %s [--port N] [--carriers N] [--threads N] [--conninfo STR] [--pool N] [--no-nodelay] "
                 "[--keep-alive-max N] [--backlog N] [--stack-kib N]\n",
                 argv[0]);
    return 2;
  }

  examples::raise_fd_limit();  // a connection per client, and poll() has no FD_SETSIZE
  std::unique_ptr<pg_pool> db;
  if (!o.conninfo.empty()) {
    std::string error;
    db = std::make_unique<pg_pool>();
    if (!create_users(o.conninfo, error) || !db->open(o.conninfo, o.pool, error)) {
      std::fprintf(stderr, "httplib_server: PostgreSQL: %s", error.c_str());
      return 1;
    }
  }

  httplib::Server svr;
  std::atomic<uint64_t> requests{0}, db_errors{0};
  client_ports served;
  auto count = [&](const httplib::Request& req) {
    requests.fetch_add(1, std::memory_order_relaxed);
    served.mark(req.remote_port);
  };
  svr.Get("/hello", [&](const httplib::Request& req, httplib::Response& res) {
    count(req);
    res.set_content("hello\n", "text/plain");
  });
  svr.Get("/sleep", [&](const httplib::Request& req, httplib::Response& res) {
    count(req);
    int ms = 0;
    if (!parse_int(req.get_param_value("ms").c_str(), 0, 10000, ms)) {
      res.status = 400;
      res.set_content("ms must be 0-10000\n", "text/plain");
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    res.set_content("slept " + std::to_string(ms) + " ms\n", "text/plain");
  });
  // A capture of the rest of the path, as many cpp-httplib servers have:
  // libstdc++'s std::regex matches it recursing once per character, so a
  // long path needs a deep stack (see --stack-kib).
  svr.Get(R"(/files/(.*))", [&](const httplib::Request& req, httplib::Response& res) {
    count(req);
    res.set_content("file name of " + std::to_string(req.matches[1].length()) + " bytes\n", "text/plain");
  });
  svr.Get(R"(/users/(\d{1,9}))", [&](const httplib::Request& req, httplib::Response& res) {
    count(req);
    if (db == nullptr) {
      res.status = 503;
      res.set_content("{\"error\":\"no database (--conninfo)\"}\n", "application/json");
      return;
    }
    const std::string id = req.matches[1];
    PGconn* c = db->take();
    const char* params[] = {id.c_str()};
    PGresult* r = PQexecParams(c, "SELECT id, name FROM httplib_users WHERE id = $1::integer", 1, nullptr, params,
                               nullptr, nullptr, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
      db_errors.fetch_add(1, std::memory_order_relaxed);
      res.status = 503;
      res.set_content("{\"error\":\"" + json_escape(PQerrorMessage(c)) + "\"}\n", "application/json");
    } else if (PQntuples(r) == 0) {
      res.status = 404;
      res.set_content("{\"error\":\"no such user\"}\n", "application/json");
    } else {
      res.set_content("{\"id\":" + std::string(PQgetvalue(r, 0, 0)) + ",\"name\":\"" +
                          json_escape(PQgetvalue(r, 0, 1)) + "\"}\n",
                      "application/json");
    }
    PQclear(r);
    db->give_back(c);
  });

  // cpp-httplib listens with a backlog of 5; the listening socket is only
  // reachable through the socket-options hook, which runs before bind.
  int listen_fd = -1;
  svr.set_socket_options([&](socket_t fd) {
    httplib::default_socket_options(fd);
    listen_fd = fd;
  });
  svr.set_tcp_nodelay(o.nodelay);
  svr.set_keep_alive_max_count(static_cast<size_t>(o.keep_alive_max));

  // Stopping: cpp-httplib's stop() does nothing before its accept loop has
  // started, so then the listening socket is shut down instead, which
  // fails the loop's first accept().
  std::atomic<bool> stopping{false}, listen_returned{false};
  examples::signal_thread signals([&] {
    stopping = true;
    if (listen_returned) return;  // the socket is closed, its number maybe reused
    if (svr.is_running()) {
      svr.stop();
    } else if (listen_fd >= 0) {
      ::shutdown(listen_fd, SHUT_RDWR);
    }
  });

  std::unique_ptr<bobbin::runtime> rt;
  std::atomic<long> spawn_retries{0};
  if (o.threads > 0) {
    const size_t n = static_cast<size_t>(o.threads);
    svr.new_task_queue = [n] { return new httplib::ThreadPool(n); };
  } else {
    bobbin::runtime_options ro;
    if (o.carriers != 0) ro.carriers = o.carriers;
    ro.stack_size = static_cast<size_t>(o.stack_kib) * 1024;
    auto started = bobbin::runtime::start(ro);
    if (!started.ok()) {
      std::fprintf(stderr, "httplib_server: %s\n", std::string(started.status().message()).c_str());
      signals.request_stop();
      return 1;
    }
    rt = std::move(*started);
    svr.new_task_queue = [&] { return new bobbin_httplib::fiber_task_queue(*rt, &spawn_retries); };
  }

  const int port = o.port == 0 ? svr.bind_to_any_port("127.0.0.1") : (svr.bind_to_port("127.0.0.1", o.port) ? o.port : -1);
  if (port <= 0) {
    std::fprintf(stderr, "httplib_server: cannot listen on 127.0.0.1:%d: %s\n", o.port, std::strerror(errno));
    signals.request_stop();
    return 1;
  }
  if (listen_fd >= 0 && ::listen(listen_fd, o.backlog) != 0) {
    std::fprintf(stderr, "httplib_server: listen backlog %d: %s\n", o.backlog, std::strerror(errno));
  }
  std::printf("listening on 127.0.0.1:%d (%s)\n", port,
              o.threads > 0 ? ("cpp-httplib's pool of " + std::to_string(o.threads) + " threads").c_str()
                            : "a fiber per connection");
  std::fflush(stdout);
  // The accept loop, on this thread; returns after stop() once every
  // connection has finished (the task queue's shutdown()).
  const bool listened = svr.listen_after_bind();
  listen_returned = true;
  signals.request_stop();  // ends the signal thread if no signal came
  if (!listened && !stopping) std::fprintf(stderr, "httplib_server: accept failed: %s\n", std::strerror(errno));

  uint64_t pin_events = 0;
  if (rt != nullptr) {
    pin_events = rt->stats().pin_events;
    rt->shutdown();
  }
  std::printf("final: mode=%s requests=%llu connections_served=%ld db_errors=%llu pin_events=%llu spawn_retries=%ld "
              "rss_peak_kib=%ld\n",
              o.threads > 0 ? "threads" : "fibers", static_cast<unsigned long long>(requests.load()), served.count(),
              static_cast<unsigned long long>(db_errors.load()), static_cast<unsigned long long>(pin_events),
              spawn_retries.load(), examples::peak_rss_kib());
  return listened || stopping ? 0 : 1;
}
