#include "examples/redis/commands.h"

#include <algorithm>
#include <charconv>
#include <climits>
#include <cstring>

namespace redis {
namespace {

constexpr std::string_view kWrongType = "WRONGTYPE Operation against a key holding the wrong kind of value";
constexpr std::string_view kNotInteger = "ERR value is not an integer or out of range";
constexpr std::string_view kSyntax = "ERR syntax error";

// An integer exactly as Redis's string2ll() takes one: an optional '-', no
// '+', no spaces, no leading zeros ("01", "-0"), within 64 bits. Every
// integer argument and INCR's stored value go through it, as in Redis, so
// " 1" or "+1" is "not an integer" here too.
bool parse_int(std::string_view s, long long& out) {
  if (s.empty() || s.size() > 20) return false;
  if (s == "0") {
    out = 0;
    return true;
  }
  const size_t digits = s[0] == '-' ? 1 : 0;
  if (s.size() == digits || s[digits] < '1' || s[digits] > '9') return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

std::string lower(std::string_view s) {
  std::string r(s);
  for (char& c : r) c = static_cast<char>((c >= 'A' && c <= 'Z') ? c - 'A' + 'a' : c);
  return r;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && strncasecmp(a.data(), b.data(), a.size()) == 0;
}

void wrong_arity(std::string& out, std::string_view name) {
  reply_error(out, "ERR wrong number of arguments for '" + lower(name) + "' command");
}

void unknown_command(std::string& out, const std::vector<std::string>& args) {
  std::string m = "ERR unknown command '" + args[0].substr(0, 128) + "', with args beginning with: ";
  for (size_t i = 1; i < args.size() && m.size() < 128; i++) m += "'" + args[i].substr(0, 128) + "' ";
  reply_error(out, m);
}

// INCR, DECR, INCRBY, DECRBY.
void incr_by(store& db, const std::string& key, long long delta, std::string& out) {
  db.with_keys({key}, [&](keyspace& ks) {
    bool created = false;
    value& v = ks.find_or_create(key, created);
    if (v.type != value::kind::string) return reply_error(out, kWrongType);
    long long n = 0;
    if (!created && !parse_int(v.str, n)) return reply_error(out, kNotInteger);
    if ((delta > 0 && n > LLONG_MAX - delta) || (delta < 0 && n < LLONG_MIN - delta)) {
      if (created) ks.erase(key);
      return reply_error(out, "ERR increment or decrement would overflow");
    }
    n += delta;
    v.str = std::to_string(n);
    reply_integer(out, n);
  });
}

void cmd_set(store& db, std::vector<std::string>& args, std::string& out) {
  // SET key value [NX | XX] [GET] [EX s | PX ms | KEEPTTL]
  bool nx = false, xx = false, get = false, keepttl = false;
  long long ttl_ms = -1;
  for (size_t i = 3; i < args.size(); i++) {
    const std::string& o = args[i];
    if (iequals(o, "NX") && !xx) nx = true;
    else if (iequals(o, "XX") && !nx) xx = true;
    else if (iequals(o, "GET")) get = true;
    else if (iequals(o, "KEEPTTL") && ttl_ms < 0) keepttl = true;
    else if ((iequals(o, "EX") || iequals(o, "PX")) && ttl_ms < 0 && !keepttl && i + 1 < args.size()) {
      long long n = 0;
      if (!parse_int(args[i + 1], n)) return reply_error(out, kNotInteger);
      if (n <= 0 || (iequals(o, "EX") && n > LLONG_MAX / 1000)) {
        return reply_error(out, "ERR invalid expire time in 'set' command");
      }
      ttl_ms = iequals(o, "EX") ? n * 1000 : n;
      i++;
    } else {
      return reply_error(out, kSyntax);
    }
  }
  const std::string& key = args[1];
  db.with_keys({key}, [&](keyspace& ks) {
    value* old = ks.find(key);
    if (get && old != nullptr && old->type != value::kind::string) return reply_error(out, kWrongType);
    std::string previous;
    bool had = old != nullptr;
    if (get && had) previous = old->str;
    if ((nx && had) || (xx && !had)) {
      if (get) had ? reply_bulk(out, previous) : reply_nil(out);
      else reply_nil(out);
      return;
    }
    bool created = false;
    value& v = ks.find_or_create(key, created);
    int64_t keep = keepttl ? v.expire_at_ms : 0;
    v.type = value::kind::string;
    v.list.clear();
    v.str = std::move(args[2]);
    ks.set_expiry(key, v, ttl_ms > 0 ? ks.now() + ttl_ms : keep);
    if (get) had ? reply_bulk(out, previous) : reply_nil(out);
    else reply_ok(out);
  });
}

// EXPIRE|PEXPIRE key n [NX | XX | GT | LT], checked in Redis 7's order:
// options, then the number, then overflow (even for a missing key), then
// the key. A key without a deadline counts as an infinite one for GT/LT.
void cmd_expire(store& db, const std::vector<std::string>& args, std::string& out, long long unit_ms) {
  bool nx = false, xx = false, gt = false, lt = false;
  for (size_t i = 3; i < args.size(); i++) {
    if (iequals(args[i], "NX")) nx = true;
    else if (iequals(args[i], "XX")) xx = true;
    else if (iequals(args[i], "GT")) gt = true;
    else if (iequals(args[i], "LT")) lt = true;
    else return reply_error(out, "ERR Unsupported option " + args[i]);
  }
  if (nx && (xx || gt || lt)) return reply_error(out, "ERR NX and XX, GT or LT options at the same time are not compatible");
  if (gt && lt) return reply_error(out, "ERR GT and LT options at the same time are not compatible");
  long long n = 0;
  if (!parse_int(args[2], n)) return reply_error(out, kNotInteger);
  const std::string invalid = "ERR invalid expire time in '" + lower(args[0]) + "' command";
  if (n > LLONG_MAX / unit_ms || n < LLONG_MIN / unit_ms) return reply_error(out, invalid);
  n *= unit_ms;
  db.with_keys({args[1]}, [&](keyspace& ks) {
    const long long now = ks.now();
    if (n > LLONG_MAX - now) return reply_error(out, invalid);
    const long long when = n + now;
    value* v = ks.find(args[1]);
    if (v == nullptr) return reply_integer(out, 0);
    const bool has_deadline = v->expire_at_ms != 0;
    if ((nx && has_deadline) || (xx && !has_deadline) || (gt && (!has_deadline || when <= v->expire_at_ms)) ||
        (lt && has_deadline && when >= v->expire_at_ms)) {
      return reply_integer(out, 0);
    }
    if (when <= now) ks.erase(args[1]);  // a deadline already past deletes, as in Redis
    else ks.set_expiry(args[1], *v, when);
    reply_integer(out, 1);
  });
}

void cmd_ttl(store& db, const std::vector<std::string>& args, std::string& out, long long unit_ms) {
  db.with_keys({args[1]}, [&](keyspace& ks) {
    value* v = ks.find(args[1]);
    if (v == nullptr) return reply_integer(out, -2);
    if (v->expire_at_ms == 0) return reply_integer(out, -1);
    long long left = v->expire_at_ms - ks.now();
    reply_integer(out, (left + unit_ms - 1) / unit_ms);  // TTL rounds up, as Redis does
  });
}

void cmd_push(store& db, const std::vector<std::string>& args, std::string& out, bool left) {
  db.with_keys({args[1]}, [&](keyspace& ks) {
    bool created = false;
    value& v = ks.find_or_create(args[1], created);
    if (created) v.type = value::kind::list;
    if (v.type != value::kind::list) return reply_error(out, kWrongType);
    for (size_t i = 2; i < args.size(); i++) {
      if (left) v.list.push_front(args[i]);
      else v.list.push_back(args[i]);
    }
    reply_integer(out, static_cast<long long>(v.list.size()));
  });
}

// LPOP|RPOP key [count]: with a count the reply is an array (a null array
// for a missing key, an empty one for a count of 0), as in Redis 6.2+.
void cmd_pop(store& db, const std::vector<std::string>& args, std::string& out, bool left) {
  if (args.size() > 3) return wrong_arity(out, args[0]);
  const bool has_count = args.size() == 3;
  long long count = 0;
  if (has_count && (!parse_int(args[2], count) || count < 0)) {
    return reply_error(out, "ERR value is out of range, must be positive");
  }
  db.with_keys({args[1]}, [&](keyspace& ks) {
    value* v = ks.find(args[1]);
    if (v == nullptr) return has_count ? void(out += "*-1\r\n") : reply_nil(out);
    if (v->type != value::kind::list) return reply_error(out, kWrongType);
    auto pop_one = [&] {
      std::string item = left ? std::move(v->list.front()) : std::move(v->list.back());
      if (left) v->list.pop_front();
      else v->list.pop_back();
      reply_bulk(out, item);
    };
    if (!has_count) {
      pop_one();
    } else {
      const size_t n = static_cast<size_t>(std::min<long long>(count, static_cast<long long>(v->list.size())));
      reply_array_header(out, n);
      for (size_t i = 0; i < n; i++) pop_one();
    }
    if (v->list.empty()) ks.erase(args[1]);
  });
}

void cmd_lrange(store& db, const std::vector<std::string>& args, std::string& out) {
  long long start = 0, stop = 0;
  if (!parse_int(args[2], start) || !parse_int(args[3], stop)) return reply_error(out, kNotInteger);
  db.with_keys({args[1]}, [&](keyspace& ks) {
    value* v = ks.find(args[1]);
    if (v == nullptr) return reply_array_header(out, 0);
    if (v->type != value::kind::list) return reply_error(out, kWrongType);
    long long n = static_cast<long long>(v->list.size());
    if (start < 0) start = std::max(0LL, n + start);
    if (stop < 0) stop = n + stop;
    stop = std::min(stop, n - 1);
    if (start > stop) return reply_array_header(out, 0);
    reply_array_header(out, static_cast<size_t>(stop - start + 1));
    for (long long i = start; i <= stop; i++) reply_bulk(out, v->list[static_cast<size_t>(i)]);
  });
}

// arity: exact count if > 0, minimum count if < 0 (Redis's convention).
struct command_spec {
  std::string_view name;
  int arity;
};

constexpr command_spec kCommands[] = {
    {"ping", -1},    {"echo", 2},    {"get", 2},      {"set", -3},     {"del", -2},     {"exists", -2},
    {"incr", 2},     {"decr", 2},    {"incrby", 3},   {"decrby", 3},   {"mget", -2},    {"mset", -3},
    {"expire", -3},  {"pexpire", -3}, {"ttl", 2},     {"pttl", 2},     {"persist", 2},  {"type", 2},
    {"dbsize", 1},   {"flushall", -1}, {"flushdb", -1}, {"select", 2}, {"quit", -1},    {"command", -1},
    {"config", -2},  {"lpush", -3},  {"rpush", -3},   {"lpop", -2},    {"rpop", -2},     {"llen", 2},
    {"lrange", 4},
};

}  // namespace

void reply_ok(std::string& out) { out += "+OK\r\n"; }
void reply_error(std::string& out, std::string_view message) {
  out += '-';
  // One line whatever the message holds, as Redis's addReplyError does.
  for (char c : message) out += (c == '\r' || c == '\n') ? ' ' : c;
  out += "\r\n";
}
void reply_integer(std::string& out, long long n) {
  char buf[24];
  out += ':';
  out.append(buf, std::to_chars(buf, buf + sizeof buf, n).ptr);
  out += "\r\n";
}
void reply_bulk(std::string& out, std::string_view s) {
  char buf[24];
  out += '$';
  out.append(buf, std::to_chars(buf, buf + sizeof buf, s.size()).ptr);
  out += "\r\n";
  out += s;
  out += "\r\n";
}
void reply_nil(std::string& out) { out += "$-1\r\n"; }
void reply_array_header(std::string& out, size_t n) {
  char buf[24];
  out += '*';
  out.append(buf, std::to_chars(buf, buf + sizeof buf, n).ptr);
  out += "\r\n";
}

bool execute(store& db, std::vector<std::string>& args, std::string& out) {
  const std::string name = lower(args[0]);
  const command_spec* spec = nullptr;
  for (const command_spec& c : kCommands) {
    if (c.name == name) spec = &c;
  }
  if (spec == nullptr) {
    unknown_command(out, args);
    return true;
  }
  const int argc = static_cast<int>(args.size());
  if ((spec->arity > 0 && argc != spec->arity) || (spec->arity < 0 && argc < -spec->arity)) {
    wrong_arity(out, args[0]);
    return true;
  }

  if (name == "ping") {
    if (argc > 2) wrong_arity(out, args[0]);
    else if (argc == 2) reply_bulk(out, args[1]);
    else out += "+PONG\r\n";
  } else if (name == "echo") {
    reply_bulk(out, args[1]);
  } else if (name == "get") {
    db.with_keys({args[1]}, [&](keyspace& ks) {
      value* v = ks.find(args[1]);
      if (v == nullptr) reply_nil(out);
      else if (v->type != value::kind::string) reply_error(out, kWrongType);
      else reply_bulk(out, v->str);
    });
  } else if (name == "set") {
    cmd_set(db, args, out);
  } else if (name == "del" || name == "exists") {
    std::vector<std::string_view> keys(args.begin() + 1, args.end());
    long long n = db.with_keys(keys, [&](keyspace& ks) {
      long long count = 0;
      for (std::string_view k : keys) count += name == "del" ? ks.erase(k) : ks.find(k) != nullptr;
      return count;
    });
    reply_integer(out, n);
  } else if (name == "incr" || name == "decr") {
    incr_by(db, args[1], name == "incr" ? 1 : -1, out);
  } else if (name == "incrby" || name == "decrby") {
    long long d = 0;
    if (!parse_int(args[2], d)) reply_error(out, kNotInteger);
    else if (name == "decrby" && d == LLONG_MIN) reply_error(out, "ERR decrement would overflow");
    else incr_by(db, args[1], name == "incrby" ? d : -d, out);
  } else if (name == "mget") {
    std::vector<std::string_view> keys(args.begin() + 1, args.end());
    db.with_keys(keys, [&](keyspace& ks) {
      reply_array_header(out, keys.size());
      for (std::string_view k : keys) {
        value* v = ks.find(k);
        if (v == nullptr || v->type != value::kind::string) reply_nil(out);
        else reply_bulk(out, v->str);
      }
    });
  } else if (name == "mset") {
    if (argc % 2 != 1) {
      wrong_arity(out, args[0]);
      return true;
    }
    std::vector<std::string_view> keys;
    for (int i = 1; i < argc; i += 2) keys.push_back(args[static_cast<size_t>(i)]);
    db.with_keys(keys, [&](keyspace& ks) {
      for (int i = 1; i < argc; i += 2) {
        bool created = false;
        value& v = ks.find_or_create(args[static_cast<size_t>(i)], created);
        v.type = value::kind::string;
        v.list.clear();
        v.str = std::move(args[static_cast<size_t>(i) + 1]);
        ks.set_expiry(args[static_cast<size_t>(i)], v, 0);
      }
    });
    reply_ok(out);
  } else if (name == "expire" || name == "pexpire") {
    cmd_expire(db, args, out, name == "expire" ? 1000 : 1);
  } else if (name == "ttl" || name == "pttl") {
    cmd_ttl(db, args, out, name == "ttl" ? 1000 : 1);
  } else if (name == "persist") {
    db.with_keys({args[1]}, [&](keyspace& ks) {
      value* v = ks.find(args[1]);
      if (v == nullptr || v->expire_at_ms == 0) return reply_integer(out, 0);
      ks.set_expiry(args[1], *v, 0);
      reply_integer(out, 1);
    });
  } else if (name == "type") {
    db.with_keys({args[1]}, [&](keyspace& ks) {
      value* v = ks.find(args[1]);
      out += v == nullptr ? "+none\r\n" : v->type == value::kind::list ? "+list\r\n" : "+string\r\n";
    });
  } else if (name == "dbsize") {
    reply_integer(out, static_cast<long long>(db.size()));
  } else if (name == "flushall" || name == "flushdb") {
    if (argc > 2 || (argc == 2 && !iequals(args[1], "SYNC") && !iequals(args[1], "ASYNC"))) {
      reply_error(out, kSyntax);
      return true;
    }
    db.clear();
    reply_ok(out);
  } else if (name == "select") {
    long long n = 0;
    if (!parse_int(args[1], n)) reply_error(out, kNotInteger);
    else if (n != 0) reply_error(out, "ERR DB index is out of range");
    else reply_ok(out);
  } else if (name == "quit") {
    reply_ok(out);
    return false;
  } else if (name == "command") {
    // Clients probe COMMAND / COMMAND DOCS for hints; an empty answer says
    // "no hints" and they go on.
    if (argc >= 2 && iequals(args[1], "COUNT")) reply_integer(out, std::size(kCommands));
    else reply_array_header(out, 0);
  } else if (name == "config") {
    // redis-benchmark asks CONFIG GET save / appendonly: no persistence here.
    if (!iequals(args[1], "GET") || argc != 3) {
      reply_error(out, "ERR CONFIG subcommand not supported by this server; only CONFIG GET");
    } else if (iequals(args[2], "save") || iequals(args[2], "appendonly")) {
      reply_array_header(out, 2);
      reply_bulk(out, lower(args[2]));
      reply_bulk(out, iequals(args[2], "save") ? "" : "no");
    } else {
      reply_array_header(out, 0);
    }
  } else if (name == "lpush" || name == "rpush") {
    cmd_push(db, args, out, name == "lpush");
  } else if (name == "lpop" || name == "rpop") {
    cmd_pop(db, args, out, name == "lpop");
  } else if (name == "llen") {
    db.with_keys({args[1]}, [&](keyspace& ks) {
      value* v = ks.find(args[1]);
      if (v == nullptr) reply_integer(out, 0);
      else if (v->type != value::kind::list) reply_error(out, kWrongType);
      else reply_integer(out, static_cast<long long>(v->list.size()));
    });
  } else if (name == "lrange") {
    cmd_lrange(db, args, out);
  }
  return true;
}

}  // namespace redis
