// examples/api_server: a JSON API over PostgreSQL in plain blocking style.
// Each request runs a query through unmodified libpq, the way any C or C++
// service talks to its database; on bobbin the libpq calls park the fiber
// (bobbin/blocking_calls.h), so one connection per fiber and 2 carriers
// serve 1,000 clients. The same code runs thread-per-connection with
// --threads, for comparison (scripts/demo part 2, perf/RESULTS.md).
//
// Routes:
//   GET /users/<id>   {"id":..,"name":"..","email":".."} from table api_users
//                     (10,000 rows, created at start if missing); 404 if none
//   GET /health       {"ok":true,"pool":N}
// Anything else 404 (JSON); a malformed request gets its 4xx and a close; a
// database failure gets 503 with the libpq message, and the connection to
// PostgreSQL is reset before it is lent again.
//
// Database connections: a pool of --pool N (default 32) PGconn, lent to one
// request at a time; a request waits (parks, on a fiber) for a free one.
// One code path for both modes: the pool is a std::mutex and a
// std::condition_variable, as in any thread-based service; on a fiber
// bobbin parks their waits (README "OS locks and waits"), so the pool needs
// no fiber-specific type.
//
// Run:  build/examples/api_server --conninfo "host=/tmp/pg dbname=postgres"
//         [--port 8080] [--carriers 2] [--pool 32] [--threads]
// SIGINT/SIGTERM: stop accepting, finish requests in flight, print
// counters (including pin events), exit 0.
#include <libpq-fe.h>

#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "bobbin/bobbin.h"
#include "examples/common/server.h"
#include "examples/http/request_parser.h"
#include "examples/http/response.h"

namespace {

using namespace std::chrono_literals;
constexpr auto kIdleTimeout = 60s;
constexpr auto kRequestTimeout = 15s;

// A fixed set of PostgreSQL connections lent out one request at a time.
class pg_pool {
 public:
  class lease {
   public:
    lease(pg_pool& p, PGconn* c) : pool_(p), conn_(c) {}
    ~lease() { pool_.give_back(conn_); }
    lease(const lease&) = delete;
    lease& operator=(const lease&) = delete;
    PGconn* get() const { return conn_; }

   private:
    pg_pool& pool_;
    PGconn* conn_;
  };

  // Opens `size` connections; false (with the message) if one fails.
  bool open(const std::string& conninfo, int size, std::string& error) {
    for (int i = 0; i < size; i++) {
      PGconn* c = PQconnectdb(conninfo.c_str());
      if (PQstatus(c) != CONNECTION_OK) {
        error = PQerrorMessage(c);
        PQfinish(c);
        return false;
      }
      free_.push_back(c);
      all_.push_back(c);
    }
    return true;
  }
  ~pg_pool() {
    for (PGconn* c : all_) PQfinish(c);
  }

  lease borrow() {
    std::unique_lock l(mu_);
    cv_.wait(l, [&] { return !free_.empty(); });
    PGconn* c = free_.back();
    free_.pop_back();
    return lease(*this, c);
  }
  size_t size() const { return all_.size(); }

 private:
  void give_back(PGconn* c) {
    if (PQstatus(c) != CONNECTION_OK) PQreset(c);  // a broken connection is mended before reuse
    {
      std::lock_guard l(mu_);
      free_.push_back(c);
    }
    cv_.notify_one();
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<PGconn*> free_;
  std::vector<PGconn*> all_;
};

struct server {
  pg_pool pool;
  bool threads = false;
  examples::connection_registry connections;
  http::request_limits limits;
  std::atomic<uint64_t> requests{0}, not_found{0}, db_errors{0};
};

// Runs fn(PGconn*) with a connection borrowed from this server's pool.
template <class F>
void with_connection(server& srv, F&& fn) {
  auto lease = srv.pool.borrow();
  fn(lease.get());
}

void append_json_string(std::string& out, std::string_view s) {
  out += '"';
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += ch;
    } else if (c < 0x20) {
      char esc[8];
      std::snprintf(esc, sizeof esc, "\\u%04x", c);
      out += esc;
    } else {
      out += ch;
    }
  }
  out += '"';
}

void append_json(std::string& out, int status, std::string_view body, bool keep_alive, bool head_only) {
  http::append_response(out, status, "application/json", body, keep_alive, head_only);
}

void get_user(server& srv, std::string_view id_text, bool keep_alive, bool head_only, std::string& out) {
  long id = 0;
  auto [end, ec] = std::from_chars(id_text.data(), id_text.data() + id_text.size(), id);
  if (id_text.empty() || ec != std::errc() || end != id_text.data() + id_text.size() || id < 0) {
    append_json(out, 400, "{\"error\":\"the id must be a non-negative integer\"}", keep_alive, head_only);
    return;
  }
  const std::string param = std::to_string(id);
  const char* values[] = {param.c_str()};
  int status = 200;
  std::string body;
  with_connection(srv, [&](PGconn* conn) {
    // Plain libpq: on a fiber, its send/recv/poll park the fiber.
    PGresult* r = PQexecParams(conn, "SELECT id, name, email FROM api_users WHERE id = $1", 1, nullptr, values,
                               nullptr, nullptr, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
      srv.db_errors.fetch_add(1, std::memory_order_relaxed);
      status = 503;
      body = "{\"error\":";
      append_json_string(body, PQerrorMessage(conn));
      body += '}';
    } else if (PQntuples(r) == 0) {
      srv.not_found.fetch_add(1, std::memory_order_relaxed);
      status = 404;
      body = "{\"error\":\"no such user\"}";
    } else {
      body = absl::StrCat("{\"id\":", PQgetvalue(r, 0, 0), ",\"name\":");
      append_json_string(body, PQgetvalue(r, 0, 1));
      body += ",\"email\":";
      append_json_string(body, PQgetvalue(r, 0, 2));
      body += '}';
    }
    PQclear(r);
  });
  append_json(out, status, body, keep_alive, head_only);
}

void handle(server& srv, const http::request& req, bool keep_alive, std::string& out) {
  std::string_view path = std::string_view(req.target).substr(0, req.target.find('?'));
  const bool head_only = req.method == "HEAD";
  if (req.method != "GET" && !head_only) {
    http::append_response(out, 405, "application/json", "{\"error\":\"only GET\"}", keep_alive, false);
    return;
  }
  if (path.starts_with("/users/")) return get_user(srv, path.substr(7), keep_alive, head_only, out);
  if (path == "/health") {
    append_json(out, 200, absl::StrCat("{\"ok\":true,\"pool\":", srv.pool.size(), "}"), keep_alive, head_only);
    return;
  }
  srv.not_found.fetch_add(1, std::memory_order_relaxed);
  append_json(out, 404, "{\"error\":\"no such route\"}", keep_alive, head_only);
}

// One client connection, in blocking style; runs on a fiber or on a thread.
void serve_connection(server& srv, bobbin::tcp_stream stream) {
  examples::connection conn(std::move(stream));
  examples::connection_registry::guard registered(srv.connections, conn);
  (void)conn.stream.set_nodelay(true);
  http::request_parser parser(srv.limits);
  examples::input_buffer in;
  std::string out;
  for (;;) {
    http::parse_result r = parser.parse(in.unconsumed());
    if (r.state == http::parse_state::complete) {
      const bool keep_alive = parser.get().keep_alive && !srv.connections.stopping();
      handle(srv, parser.get(), keep_alive, out);
      srv.requests.fetch_add(1, std::memory_order_relaxed);
      in.consume(r.consumed);
      parser.reset();
      if (!keep_alive) {
        (void)examples::flush(conn.stream, out, bobbin::deadline(kRequestTimeout));
        return;
      }
      continue;  // answer a pipelined batch in one write
    }
    if (r.state == http::parse_state::error) {
      http::append_response(out, r.error_status, "application/json",
                            absl::StrCat("{\"error\":\"", r.error_reason, "\"}"), false, false);
      (void)examples::flush(conn.stream, out, bobbin::deadline(kRequestTimeout));
      return;
    }
    if (!examples::flush(conn.stream, out, bobbin::deadline(kRequestTimeout))) return;
    bobbin::io_result rr =
        srv.connections.read_more(conn, in, bobbin::deadline(kIdleTimeout), bobbin::deadline(kRequestTimeout));
    if (!rr || rr.bytes == 0) return;  // closed, timed out, reset, or a stop
  }
}

bool create_table(PGconn* c, std::string& error) {
  PGresult* r = PQexec(c,
                       "CREATE TABLE IF NOT EXISTS api_users (id integer PRIMARY KEY, name text NOT NULL, "
                       "email text NOT NULL);"
                       "INSERT INTO api_users SELECT g, 'user ' || g, 'user' || g || '@example.com' "
                       "FROM generate_series(1, 10000) g ON CONFLICT DO NOTHING;");
  bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
  if (!ok) error = PQerrorMessage(c);
  PQclear(r);
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  int port = 8080;
  unsigned carriers = 2;
  int pool_size = 32;
  bool threads = false;
  std::string conninfo;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    if (a == "--port" && i + 1 < argc) port = std::atoi(argv[++i]);
    else if (a == "--carriers" && i + 1 < argc) carriers = static_cast<unsigned>(std::atoi(argv[++i]));
    else if (a == "--pool" && i + 1 < argc) pool_size = std::atoi(argv[++i]);
    else if (a == "--conninfo" && i + 1 < argc) conninfo = argv[++i];
    else if (a == "--threads") threads = true;
    else {
      std::fprintf(stderr, "usage: %s --conninfo STR [--port N] [--carriers N] [--pool N] [--threads]\n", argv[0]);
      return 2;
    }
  }
  if (conninfo.empty() || pool_size < 1) {
    std::fprintf(stderr, "api_server: --conninfo is required and --pool must be at least 1\n");
    return 2;
  }
  examples::raise_fd_limit();
  server srv;
  srv.threads = threads;
  std::string error;
  bool opened = srv.pool.open(conninfo, pool_size, error);
  if (opened) with_connection(srv, [&](PGconn* c) { opened = create_table(c, error); });
  if (!opened) {
    std::fprintf(stderr, "api_server: PostgreSQL: %s", error.c_str());
    return 1;
  }
  auto listener = bobbin::tcp_listener::bind(bobbin::socket_address::loopback(static_cast<uint16_t>(port)));
  if (!listener.ok()) {
    std::fprintf(stderr, "api_server: %s\n", std::string(listener.status().ToString()).c_str());
    return 1;
  }
  examples::signal_thread signals([&] { srv.connections.request_stop(*listener); });
  uint64_t pin_events = 0;
  if (threads) {
    std::printf("listening on %s threads pool %d\n", listener->local_address().to_string().c_str(), pool_size);
    std::fflush(stdout);
    for (;;) {
      auto s = listener->accept();  // a plain thread: blocks it
      if (!s) {
        if (srv.connections.stopping()) break;
        std::this_thread::sleep_for(10ms);  // EMFILE and the like: back off
        continue;
      }
      srv.connections.count_connection();
      std::thread([&srv, st = std::move(*s)]() mutable { serve_connection(srv, std::move(st)); }).detach();
    }
    listener->close();
    if (!srv.connections.stop_and_drain(10s)) std::fprintf(stderr, "api_server: cut busy connections\n");
  } else {
    bobbin::runtime_options options;
    options.carriers = carriers;
    auto rt = bobbin::runtime::start(options);
    if (!rt.ok()) {
      std::fprintf(stderr, "api_server: %s\n", std::string(rt.status().message()).c_str());
      signals.request_stop();
      return 1;
    }
    std::printf("listening on %s carriers %u pool %d\n", listener->local_address().to_string().c_str(),
                (*rt)->carriers(), pool_size);
    std::fflush(stdout);
    (*rt)->spawn([&] {
        std::function<void(bobbin::tcp_stream)> serve = [&srv](bobbin::tcp_stream s) {
          serve_connection(srv, std::move(s));
        };
        bobbin::scope connection_fibers;
        srv.connections.accept_loop(*listener, "api_server", serve, connection_fibers);
        if (!srv.connections.stop_and_drain(10s, &connection_fibers)) {
          std::fprintf(stderr, "api_server: cut busy connections\n");
        }
        connection_fibers.join();
      }).join();
    pin_events = (*rt)->stats().pin_events;
  }
  std::printf("final: mode=%s accepted=%llu requests=%llu not_found=%llu db_errors=%llu pin_events=%llu "
              "rss_peak_kib=%ld\n",
              threads ? "threads" : "fibers", static_cast<unsigned long long>(srv.connections.accepted()),
              static_cast<unsigned long long>(srv.requests.load()),
              static_cast<unsigned long long>(srv.not_found.load()),
              static_cast<unsigned long long>(srv.db_errors.load()), static_cast<unsigned long long>(pin_events),
              examples::peak_rss_kib());
  return 0;
}
