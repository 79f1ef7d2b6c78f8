// examples/redis/store.h
//
// The key space of the Redis example: string and list values with optional
// expiry, shared by every connection fiber on every carrier.
//
// Concurrency: the keys are spread over 64 shards by hash, each a
// flat_hash_map guarded by its own bobbin::mutex. A command locks the shards
// of the keys it names, in shard order (so multi-key commands such as MSET
// are atomic and cannot deadlock), and never parks while holding them.
// Cost: one uncontended CAS pair per single-key command; with 2 carriers two
// commands collide only when their keys share a shard (1 in 64), and then the
// loser spins briefly (bobbin::mutex spins before it parks). A single global
// lock would serialise every command across carriers (not measured here).
//
// Expiry: keys with a deadline are also in their shard's (deadline, key)
// index. Reads treat an expired key as absent and delete it (lazy expiry);
// reap_expired() walks the front of each index, so a background fiber
// deletes keys that nobody reads again. Time is CLOCK_MONOTONIC milliseconds.
#ifndef BOBBIN_EXAMPLES_REDIS_STORE_H_
#define BOBBIN_EXAMPLES_REDIS_STORE_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "bobbin/sync/mutex.h"

namespace redis {

int64_t now_ms();

struct value {
  enum class kind { string, list };
  kind type = kind::string;
  std::string str;
  std::deque<std::string> list;
  int64_t expire_at_ms = 0;  // 0: no expiry
};

class store;

// The keys a command locked. Every key passed to these calls must be one of
// the keys given to store::with_keys().
class keyspace {
 public:
  // The live value of `key`, or nullptr (an expired key is deleted here).
  value* find(std::string_view key);
  // The value of `key`, created empty (a string, no expiry) if absent.
  value& find_or_create(std::string_view key, bool& created);
  bool erase(std::string_view key);
  // Sets or clears (0) the key's deadline, keeping the index in step.
  void set_expiry(std::string_view key, value& v, int64_t expire_at_ms);
  int64_t now() const { return now_; }

 private:
  friend class store;
  keyspace(store& s, int64_t now) : store_(s), now_(now) {}
  store& store_;
  int64_t now_;
};

class store {
 public:
  store();

  // Runs f(keyspace&) with the shards of `keys` locked.
  template <class F>
  auto with_keys(const std::vector<std::string_view>& keys, F&& f) {
    std::vector<size_t> shards = lock_shards(keys);
    keyspace ks(*this, now_ms());
    struct unlock_on_exit {
      store& s;
      std::vector<size_t>& shards;
      ~unlock_on_exit() { s.unlock_shards(shards); }
    } unlock{*this, shards};
    return f(ks);
  }

  size_t size();      // DBSIZE: the sum over shards, each read under its lock
  void clear();       // FLUSHALL: every shard, all locked at once
  // Deletes up to `budget` expired keys per shard; returns how many.
  size_t reap_expired(size_t budget);

 private:
  friend class keyspace;
  static constexpr size_t kShards = 64;
  struct shard {
    bobbin::mutex mu;
    absl::flat_hash_map<std::string, value> map;
    std::set<std::pair<int64_t, std::string>> expiries;
  };
  size_t shard_of(std::string_view key) const;
  shard& shard_for(std::string_view key) { return *shards_[shard_of(key)]; }
  std::vector<size_t> lock_shards(const std::vector<std::string_view>& keys);
  void unlock_shards(const std::vector<size_t>& shards);

  std::vector<std::unique_ptr<shard>> shards_;
};

}  // namespace redis

#endif  // BOBBIN_EXAMPLES_REDIS_STORE_H_
