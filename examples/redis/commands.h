// examples/redis/commands.h
//
// The commands of the Redis example and their RESP2 replies, worded as Redis
// 7 words them so that client libraries raise the right exceptions:
//   PING ECHO GET SET(EX PX NX XX KEEPTTL GET) DEL EXISTS INCR DECR INCRBY
//   DECRBY MGET MSET EXPIRE PEXPIRE TTL PTTL PERSIST TYPE DBSIZE FLUSHALL
//   FLUSHDB SELECT(0) QUIT COMMAND CONFIG(GET) LPUSH RPUSH LPOP RPOP LLEN
//   LRANGE
// (the list commands exist so that WRONGTYPE can happen).
#ifndef BOBBIN_EXAMPLES_REDIS_COMMANDS_H_
#define BOBBIN_EXAMPLES_REDIS_COMMANDS_H_

#include <string>
#include <vector>

#include "examples/redis/store.h"

namespace redis {

// Runs one command and appends its reply to `out`. Returns false when the
// connection should close after the reply (QUIT).
bool execute(store& db, std::vector<std::string>& args, std::string& out);

// Reply encoders.
void reply_ok(std::string& out);
void reply_error(std::string& out, std::string_view message);  // message without '-'
void reply_integer(std::string& out, long long n);
void reply_bulk(std::string& out, std::string_view s);
void reply_nil(std::string& out);
void reply_array_header(std::string& out, size_t n);

}  // namespace redis

#endif  // BOBBIN_EXAMPLES_REDIS_COMMANDS_H_
