// examples/http/request_parser: well-formed requests whole, byte by byte and
// in random splits; every malformed or oversized case with its status;
// truncated input; and random bytes, which must never crash or overrun.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "examples/http/request_parser.h"
#include "examples/http/response.h"

namespace {

using http::parse_result;
using http::parse_state;
using http::request_parser;

// Feeds `wire` to a parser in pieces at `cuts` (sorted offsets), as a
// connection would: the parser sees the whole unconsumed prefix each time.
// Returns every completed request, and the final state.
struct feed_outcome {
  std::vector<http::request> requests;
  parse_result last;
};

feed_outcome feed(const std::string& wire, const std::vector<size_t>& cuts, http::request_limits limits = {}) {
  feed_outcome o;
  request_parser p(limits);
  std::string buf;
  size_t start = 0;
  size_t fed = 0;
  std::vector<size_t> ends = cuts;
  ends.push_back(wire.size());
  for (size_t end : ends) {
    buf.append(wire, fed, end - fed);
    fed = end;
    for (;;) {
      o.last = p.parse(std::string_view(buf).substr(start));
      if (o.last.state != parse_state::complete) break;
      o.requests.push_back(p.get());
      start += o.last.consumed;
      p.reset();
    }
    if (o.last.state == parse_state::error) break;
  }
  return o;
}

feed_outcome feed_whole(const std::string& wire, http::request_limits limits = {}) { return feed(wire, {}, limits); }

std::vector<size_t> every_byte(const std::string& wire) {
  std::vector<size_t> cuts;
  for (size_t i = 1; i < wire.size(); i++) cuts.push_back(i);
  return cuts;
}

const std::string kPipeline =
    "GET /static/a.txt?x=1 HTTP/1.1\r\nHost: example\r\nUser-Agent: test\r\nAccept: */*\r\n\r\n"
    "POST /echo HTTP/1.1\r\nHost: example\r\nContent-Length: 11\r\nContent-Type: text/plain\r\n\r\nhello world"
    "GET / HTTP/1.0\r\n\r\n";

void expect_pipeline(const feed_outcome& o) {
  ASSERT_EQ(o.requests.size(), 3u);
  EXPECT_EQ(o.requests[0].method, "GET");
  EXPECT_EQ(o.requests[0].target, "/static/a.txt?x=1");
  EXPECT_EQ(o.requests[0].version_minor, 1);
  ASSERT_NE(o.requests[0].header("user-agent"), nullptr);
  EXPECT_EQ(*o.requests[0].header("user-agent"), "test");
  EXPECT_TRUE(o.requests[0].keep_alive);
  EXPECT_EQ(o.requests[1].method, "POST");
  EXPECT_EQ(o.requests[1].body, "hello world");
  EXPECT_EQ(*o.requests[1].header("content-type"), "text/plain");
  EXPECT_EQ(o.requests[2].version_minor, 0);
  EXPECT_FALSE(o.requests[2].keep_alive);  // HTTP/1.0 without keep-alive
  EXPECT_EQ(o.last.state, parse_state::need_more);
}

TEST(HttpParserTest, PipelinedRequestsWhole) { expect_pipeline(feed_whole(kPipeline)); }

TEST(HttpParserTest, PipelinedRequestsByteByByte) { expect_pipeline(feed(kPipeline, every_byte(kPipeline))); }

// Cut points for `wire`: each offset with probability 1/`one_in`.
std::vector<size_t> random_cuts(const std::string& wire, std::mt19937& rng, unsigned one_in) {
  std::vector<size_t> cuts;
  for (size_t i = 1; i < wire.size(); i++) {
    if (rng() % one_in == 0) cuts.push_back(i);
  }
  return cuts;
}

// Every proper prefix of `req` (one request) needs more; the whole is it.
void expect_every_prefix_needs_more(const std::string& req) {
  for (size_t n = 0; n < req.size(); n++) {
    request_parser p;
    EXPECT_EQ(p.parse(std::string_view(req).substr(0, n)).state, parse_state::need_more) << n;
  }
  request_parser p;
  parse_result r = p.parse(req);
  EXPECT_EQ(r.state, parse_state::complete);
  EXPECT_EQ(r.consumed, req.size());
}

TEST(HttpParserTest, PipelinedRequestsInRandomSplits) {
  std::mt19937 rng(12345);
  for (int round = 0; round < 500; round++) {
    SCOPED_TRACE(round);
    expect_pipeline(feed(kPipeline, random_cuts(kPipeline, rng, 8)));
  }
}

TEST(HttpParserTest, EveryPrefixOfAValidRequestNeedsMore) {
  expect_every_prefix_needs_more("POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nbody");
}

TEST(HttpParserTest, KeepAliveRules) {
  EXPECT_FALSE(feed_whole("GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n").requests.at(0).keep_alive);
  EXPECT_FALSE(feed_whole("GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, CLOSE\r\n\r\n").requests.at(0).keep_alive);
  EXPECT_TRUE(feed_whole("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").requests.at(0).keep_alive);
  EXPECT_TRUE(feed_whole("GET / HTTP/1.1\r\nHost: h\r\n\r\n").requests.at(0).keep_alive);
}

TEST(HttpParserTest, LeadingEmptyLinesAreIgnoredAndOwsTrimmed) {
  auto o = feed_whole("\r\n\r\nGET / HTTP/1.1\r\nHost:   spaced  \t\r\nX-Empty:\r\n\r\n");
  ASSERT_EQ(o.requests.size(), 1u);
  EXPECT_EQ(*o.requests[0].header("host"), "spaced");
  EXPECT_EQ(*o.requests[0].header("x-empty"), "");
}

// A split inside a leading empty line (after its CR) used to end the
// skipping: the empty line was then taken for the request line (found by
// tests/fuzz/http_request_fuzzer).
TEST(HttpParserTest, LeadingEmptyLinesAreIgnoredWhereverTheBytesSplit) {
  const std::string wire = "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
  for (size_t cut = 1; cut < wire.size(); cut++) {
    SCOPED_TRACE(cut);
    auto o = feed(wire, {cut});
    ASSERT_EQ(o.requests.size(), 1u);
    EXPECT_EQ(o.requests[0].method, "GET");
  }
  auto o = feed(wire, every_byte(wire));
  ASSERT_EQ(o.requests.size(), 1u);
}

// RFC 9112 section 7.1: sizes in hex (either case, leading zeros), chunk
// extensions skipped, trailer fields dropped; the next pipelined request
// starts right after the trailers' CRLF.
const std::string kChunked =
    "POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n"
    "5\r\nhello\r\n"
    "006;ext=\"a b\";other\r\n world\r\n"
    "A \t;x\r\n0123456789\r\n"
    "0\r\nX-Checksum: 1\r\nX-Other: 2\r\n\r\n"
    "GET /next HTTP/1.1\r\nHost: h\r\n\r\n";

void expect_chunked(const feed_outcome& o) {
  ASSERT_EQ(o.requests.size(), 2u);
  EXPECT_EQ(o.requests[0].body, "hello world0123456789");
  EXPECT_TRUE(o.requests[0].keep_alive);
  EXPECT_EQ(o.requests[1].target, "/next");
  EXPECT_EQ(o.last.state, parse_state::need_more);
}

TEST(HttpParserTest, ChunkedBodiesAreDecodedWhereverTheBytesSplit) {
  expect_chunked(feed_whole(kChunked));
  expect_chunked(feed(kChunked, every_byte(kChunked)));
  std::mt19937 rng(99);
  for (int round = 0; round < 300; round++) {
    SCOPED_TRACE(round);
    expect_chunked(feed(kChunked, random_cuts(kChunked, rng, 6)));
  }
  // No trailers, and an empty body.
  auto o = feed_whole("POST /e HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
  ASSERT_EQ(o.requests.size(), 1u);
  EXPECT_EQ(o.requests[0].body, "");
}

TEST(HttpParserTest, EveryPrefixOfAChunkedRequestNeedsMore) {
  const std::string req = "POST /e HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nT: v\r\n\r\n";
  expect_every_prefix_needs_more(req);
  request_parser p;
  ASSERT_EQ(p.parse(req).state, parse_state::complete);
  EXPECT_EQ(p.get().body, "abc");
}

struct bad_case {
  const char* name;
  std::string wire;
  int status;
};

TEST(HttpParserTest, MalformedAndOversizedRequestsGetTheirStatus) {
  http::request_limits small;
  small.max_request_line = 64;
  small.max_head_bytes = 256;
  small.max_headers = 4;
  small.max_body = 16;
  const std::vector<bad_case> cases = {
      {"bare LF", "GET / HTTP/1.1\nHost: h\n\n", 400},
      {"bare LF in a header", "GET / HTTP/1.1\r\nHost: h\n\r\n", 400},
      {"no target", "GET HTTP/1.1\r\nHost: h\r\n\r\n", 400},
      {"double space", "GET  / HTTP/1.1\r\nHost: h\r\n\r\n", 400},
      {"bad method", "G(T / HTTP/1.1\r\nHost: h\r\n\r\n", 400},
      {"control in target", std::string("GET /\x01 HTTP/1.1\r\nHost: h\r\n\r\n"), 400},
      {"not HTTP", "GET / FTP/1.1\r\nHost: h\r\n\r\n", 400},
      {"version garbage", "GET / HTTP/1.x\r\nHost: h\r\n\r\n", 400},
      {"HTTP/2", "GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505},
      {"HTTP/1.2", "GET / HTTP/1.2\r\nHost: h\r\n\r\n", 505},
      {"missing Host", "GET / HTTP/1.1\r\n\r\n", 400},
      {"two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
      {"obs-fold", "GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n", 400},
      {"no colon", "GET / HTTP/1.1\r\nHost: h\r\nJunk\r\n\r\n", 400},
      {"space before colon", "GET / HTTP/1.1\r\nHost : h\r\n\r\n", 400},
      {"control in value", std::string("GET / HTTP/1.1\r\nHost: h\x01\r\n\r\n"), 400},
      {"bad Content-Length", "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 1x\r\n\r\n", 400},
      {"negative Content-Length", "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", 400},
      {"conflicting Content-Length", "POST /e HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400},
      {"CL and TE", "POST /e HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
      {"gzip, chunked", "POST /e HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501},
      {"chunked twice", "POST /e HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 501},
      {"TE on HTTP/1.0", "POST /e HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
      {"chunk size not hex", "POST /e HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nz\r\n", 400},
      {"chunk size missing", "POST /e HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n;x\r\n", 400},
      {"junk after chunk size", "POST /e HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5 x\r\n", 400},
      {"bare LF after chunk size", "POST /e HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n", 400},
      {"chunk data without CRLF", "POST /e HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabcd", 400},
      {"chunk size line too long", "POST /e HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1;" +
                                       std::string(2000, 'e'), 400},
      {"chunked body too large", "POST /e HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n" +
                                     std::string(16, 'a') + "\r\n1\r\n", 413},
      {"huge chunk size", "POST /e HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffffffff\r\n", 413},
      {"tiny chunks, long extensions", [] {
         std::string w = "POST /e HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
         for (int i = 0; i < 15; i++) w += "1;" + std::string(100, 'e') + "\r\na\r\n";
         return w;
       }(), 413},
      {"malformed trailer", "POST /e HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nno colon\r\n\r\n", 400},
      {"trailers too large", "POST /e HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT: " +
                                 std::string(300, 'v'), 431},
      {"long request line", "GET /" + std::string(100, 'a') + " HTTP/1.1\r\nHost: h\r\n\r\n", 414},
      {"long request line, unterminated", "GET /" + std::string(100, 'a'), 414},
      {"too many headers", "GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n", 431},
      {"head too large", "GET / HTTP/1.1\r\nHost: h\r\nX: " + std::string(300, 'v') + "\r\n\r\n", 431},
      {"head too large, unterminated", "GET / HTTP/1.1\r\nHost: h\r\nX: " + std::string(300, 'v'), 431},
      {"body too large", "POST /e HTTP/1.1\r\nHost: h\r\nContent-Length: 17\r\n\r\n", 413},
      {"huge Content-Length", "POST /e HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999999\r\n\r\n", 413},
  };
  for (const bad_case& c : cases) {
    SCOPED_TRACE(c.name);
    feed_outcome whole = feed_whole(c.wire, small);
    EXPECT_EQ(whole.last.state, parse_state::error);
    EXPECT_EQ(whole.last.error_status, c.status);
    EXPECT_TRUE(whole.requests.empty());
    // The same verdict when the bytes trickle in.
    feed_outcome trickled = feed(c.wire, every_byte(c.wire), small);
    EXPECT_EQ(trickled.last.state, parse_state::error);
    EXPECT_EQ(trickled.last.error_status, c.status);
  }
}

TEST(HttpParserTest, RandomBytesNeverCrashOrOverrun) {
  std::mt19937 rng(7);
  const std::string alphabet = "GET /HTTP1.\r\n:Host-Length0123456789 \t\x01\x7f";
  for (int round = 0; round < 20000; round++) {
    std::string wire;
    size_t n = rng() % 200;
    for (size_t i = 0; i < n; i++) wire += alphabet[rng() % alphabet.size()];
    if (rng() % 2) wire = "GET / HTTP/1.1\r\nHost: h\r\n" + wire;
    request_parser p;
    parse_result r = p.parse(wire);
    if (r.state == parse_state::complete) {
      EXPECT_LE(r.consumed, wire.size());
    }
    if (r.state == parse_state::error) {
      EXPECT_GE(r.error_status, 400);
      EXPECT_LT(r.error_status, 600);
    }
  }
}

TEST(HttpResponseTest, PercentDecodeAndContentTypes) {
  std::string out;
  EXPECT_TRUE(http::percent_decode("a%20b%2Fc", out));
  EXPECT_EQ(out, "a b/c");
  EXPECT_FALSE(http::percent_decode("a%2", out));
  EXPECT_FALSE(http::percent_decode("a%zz", out));
  EXPECT_FALSE(http::percent_decode("a%00b", out));
  EXPECT_EQ(http::content_type_for("x/index.HTML"), "text/html; charset=utf-8");
  EXPECT_EQ(http::content_type_for("a.png"), "image/png");
  EXPECT_EQ(http::content_type_for("dir.d/noext"), "application/octet-stream");
}

}  // namespace
