#include "fetch/fetcher.hpp"

#include <curl/curl.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>

#include "core/backoff.hpp"
#include "core/fs.hpp"
#include "core/log.hpp"
#include "digest/sha256.hpp"

namespace gantry::fetch {
namespace {

constexpr char kLog[] = "fetch";
constexpr long kPollMs = 100;  // how long a cancel can go unnoticed

struct EasyFree {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
struct MultiFree {
  void operator()(CURLM* m) const { curl_multi_cleanup(m); }
};

void GlobalInit() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

bool Cancelled(const Options& o, const std::atomic<bool>& stop) {
  return stop.load() || (o.cancel && o.cancel->load());
}

// What one request did to the partial file.
struct Attempt {
  CURL* easy = nullptr;
  int fd = -1;
  std::uint64_t size = 0;
  std::uint64_t offset = 0;  // bytes in the partial file (and in hash)
  digest::Sha256* hash = nullptr;
  const Options* options = nullptr;
  bool ranged = false;  // asked for bytes from `offset` on
  bool checked = false;
  std::optional<std::uint64_t> content_range_start;
  bool progressed = false, oversize = false, restart = false;
  std::optional<Error> io_error;
};

size_t OnHeader(char* data, size_t size, size_t n, void* user) {
  auto* a = static_cast<Attempt*>(user);
  std::string_view line(data, size * n);
  constexpr std::string_view kName = "content-range:";
  if (line.size() > kName.size() && strncasecmp(line.data(), kName.data(), kName.size()) == 0) {
    unsigned long long start = 0;
    if (std::sscanf(std::string(line.substr(kName.size())).c_str(), " bytes %llu-", &start) == 1)
      a->content_range_start = start;
  }
  return size * n;
}

// Empties the partial file so the transfer starts again from byte 0.
bool Truncate(Attempt& a) {
  if (a.offset > 0 && a.options->on_bytes) a.options->on_bytes(-static_cast<std::int64_t>(a.offset));
  a.offset = 0;
  *a.hash = digest::Sha256();
  if (::ftruncate(a.fd, 0) != 0) {
    a.io_error = Error{"io", std::string("cannot truncate partial file: ") + std::strerror(errno)};
    return false;
  }
  return true;
}

size_t OnData(char* data, size_t size, size_t n, void* user) {
  auto* a = static_cast<Attempt*>(user);
  size_t total = size * n;
  if (!a->checked) {
    a->checked = true;
    long code = 0;
    curl_easy_getinfo(a->easy, CURLINFO_RESPONSE_CODE, &code);
    if (a->ranged && code == 200) {
      // The server ignored our Range: the body is the whole block, from byte 0.
      if (!Truncate(*a)) return 0;
    } else if (a->ranged && code == 206 && a->content_range_start != a->offset) {
      a->restart = true;  // not the bytes we asked for: start over on the next attempt
      return 0;
    }
  }
  size_t take = static_cast<size_t>(std::min<std::uint64_t>(total, a->size - a->offset));
  size_t done = 0;
  while (done < take) {
    ssize_t w = ::pwrite(a->fd, data + done, take - done, static_cast<off_t>(a->offset + done));
    if (w < 0) {
      if (errno == EINTR) continue;
      a->io_error = Error{errno == ENOSPC ? "no_space" : "io",
                          std::string("cannot write partial file: ") + std::strerror(errno)};
      return 0;
    }
    done += static_cast<size_t>(w);
  }
  a->hash->Update(data, take);
  a->offset += take;
  if (take > 0) {
    a->progressed = true;
    if (a->options->on_bytes) a->options->on_bytes(static_cast<std::int64_t>(take));
  }
  if (take < total) {
    a->oversize = true;  // never store more than the block's size
    return 0;
  }
  return total;
}

// One worker: an easy handle driven by a private multi handle, so that a cancel is noticed
// within kPollMs even while a server stalls, and connections are reused between blocks.
class Session {
 public:
  Session(const Options& options, const std::atomic<bool>& stop)
      : options_(options), stop_(stop), multi_(curl_multi_init()), easy_(curl_easy_init()) {}

  Expected<std::string> Download(const Transfer& t);

 private:
  enum class Verdict { kDone, kRetry, kRestart };
  Expected<Verdict> RunAttempt(const Transfer& t, Attempt& a, std::string& why);
  ExpectedVoid Sleep(std::chrono::milliseconds d);

  const Options& options_;
  const std::atomic<bool>& stop_;
  std::unique_ptr<CURLM, MultiFree> multi_;
  std::unique_ptr<CURL, EasyFree> easy_;
};

ExpectedVoid Session::Sleep(std::chrono::milliseconds d) {
  auto end = std::chrono::steady_clock::now() + d;
  while (std::chrono::steady_clock::now() < end) {
    if (Cancelled(options_, stop_)) return Fail("cancelled", "download cancelled");
    std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(
        std::chrono::milliseconds(kPollMs), end - std::chrono::steady_clock::now()));
  }
  return {};
}

Expected<std::string> Session::Download(const Transfer& t) {
  if (!multi_ || !easy_) return Fail("io", "cannot create a curl handle");
  fs::Fd fd(::open(t.partial.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
  if (!fd) return Fail("io", fs::ErrnoMessage("cannot open", t.partial));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return Fail("io", fs::ErrnoMessage("cannot stat", t.partial));
  std::uint64_t have = static_cast<std::uint64_t>(st.st_size);
  if (have > t.size) {
    if (::ftruncate(fd.get(), 0) != 0) return Fail("io", fs::ErrnoMessage("cannot truncate", t.partial));
    have = 0;
  }
  // Resume: the hash state is rebuilt from the bytes already on disk.
  digest::Sha256 hash;
  {
    std::vector<char> buf(256 * 1024);
    std::uint64_t off = 0;
    while (off < have) {
      ssize_t n = ::pread(fd.get(), buf.data(), std::min<std::uint64_t>(buf.size(), have - off),
                          static_cast<off_t>(off));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return Fail("io", fs::ErrnoMessage("cannot read", t.partial));
      hash.Update(buf.data(), static_cast<size_t>(n));
      off += static_cast<std::uint64_t>(n);
    }
  }
  if (have > 0 && options_.on_bytes) options_.on_bytes(static_cast<std::int64_t>(have));

  Attempt a;
  a.easy = easy_.get();
  a.fd = fd.get();
  a.size = t.size;
  a.offset = have;
  a.hash = &hash;
  a.options = &options_;
  Backoff backoff(options_.backoff_first, options_.backoff_max);
  int failures = 0;
  while (a.offset < t.size) {
    std::string why;
    auto v = RunAttempt(t, a, why);
    if (!v) return Unexpected(v.error());
    if (*v == Verdict::kDone) break;
    if (*v == Verdict::kRestart && !Truncate(a)) return Unexpected(*a.io_error);
    if (a.progressed) {
      failures = 0;
      backoff.Reset();
    }
    if (++failures >= options_.max_attempts)
      return Fail("network", t.url + ": " + why + " (gave up after " + std::to_string(failures) +
                                 " attempts)");
    auto delay = backoff.Next();
    log::Debug(kLog, t.url + ": " + why + ", retrying in " + std::to_string(delay.count()) + " ms");
    if (auto s = Sleep(delay); !s) return Unexpected(s.error());
  }
  return hash.FinalHex();
}

Expected<Session::Verdict> Session::RunAttempt(const Transfer& t, Attempt& a, std::string& why) {
  CURL* e = easy_.get();
  curl_easy_reset(e);
  a.checked = a.progressed = a.oversize = a.restart = false;
  a.content_range_start.reset();
  a.io_error.reset();
  a.ranged = a.offset > 0;
  char errbuf[CURL_ERROR_SIZE] = "";
  curl_easy_setopt(e, CURLOPT_URL, t.url.c_str());
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https,file");
  curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_MAXREDIRS, 5L);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_FAILONERROR, 1L);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 256L * 1024);
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, static_cast<long>(options_.connect_timeout.count()));
  curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, options_.low_speed_bytes);
  curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, static_cast<long>(options_.low_speed_time.count()));
  if (options_.ca_file) curl_easy_setopt(e, CURLOPT_CAINFO, options_.ca_file->c_str());
  // CURLOPT_RANGE rather than RESUME_FROM: curl then hands us a 200 answer to a Range request
  // (which we take from byte 0) instead of failing the transfer after the server sent it.
  std::string range = std::to_string(a.offset) + "-";
  if (a.ranged) curl_easy_setopt(e, CURLOPT_RANGE, range.c_str());
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, OnData);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, &a);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, OnHeader);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, &a);

  curl_multi_add_handle(multi_.get(), e);
  int running = 1;
  bool cancelled = false;
  for (;;) {
    curl_multi_perform(multi_.get(), &running);
    if (!running) break;
    if (Cancelled(options_, stop_)) {
      cancelled = true;
      break;
    }
    curl_multi_poll(multi_.get(), nullptr, 0, kPollMs, nullptr);
  }
  CURLcode rc = CURLE_OK;
  int left = 0;
  while (CURLMsg* m = curl_multi_info_read(multi_.get(), &left))
    if (m->msg == CURLMSG_DONE) rc = m->data.result;
  long code = 0;
  curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
  curl_multi_remove_handle(multi_.get(), e);

  if (cancelled) return Fail("cancelled", "download of " + t.url + " cancelled");
  if (a.io_error) return Unexpected(a.io_error->WithContext(t.partial.string()));
  if (rc == CURLE_OK) {
    // A size that is only a limit (a chunk index) ends wherever the body ends.
    if (a.offset >= t.size || t.size_is_limit) return Verdict::kDone;
    curl_off_t length = -1;
    curl_easy_getinfo(e, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &length);
    if (code == 200 && length >= 0 && static_cast<std::uint64_t>(length) < t.size)
      // The whole file is shorter than the revision declares: no retry can make it whole.
      return Fail("bad_size", t.url + ": the server sent " + std::to_string(a.offset) + " of " +
                                  std::to_string(t.size) + " bytes: the file has " + std::to_string(length) +
                                  " bytes, fewer than the revision declares");
    // A body that ended early (no Content-Length, connection closed) is not a block: resume
    // it with a Range request like any other interruption; never hand a short file on.
    why = "the server sent " + std::to_string(a.offset) + " of " + std::to_string(t.size) + " bytes";
    log::Warn(kLog, t.url + ": " + why);
    return Verdict::kRetry;
  }
  if (a.oversize) {
    log::Warn(kLog, t.url + ": the server sent more than " + std::to_string(t.size) +
                        " bytes; kept the first " + std::to_string(t.size));
    return Verdict::kDone;
  }
  why = errbuf[0] ? errbuf : curl_easy_strerror(rc);
  switch (rc) {
    case CURLE_HTTP_RETURNED_ERROR:
      if (code == 416 && a.ranged) return Verdict::kRestart;
      if (code >= 400 && code < 500 && code != 408 && code != 429)
        return Fail("http", t.url + ": HTTP " + std::to_string(code));
      return Verdict::kRetry;
    case CURLE_BAD_DOWNLOAD_RESUME:
    case CURLE_RANGE_ERROR:
      return Verdict::kRestart;
    case CURLE_FILE_COULDNT_READ_FILE:
    case CURLE_REMOTE_FILE_NOT_FOUND:
      return Fail("http", t.url + ": not found");
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
      return Fail("http", t.url + ": " + why);
    case CURLE_WRITE_ERROR:
      if (a.restart) return Verdict::kRestart;
      return Verdict::kRetry;
    default:
      return Verdict::kRetry;
  }
}

}  // namespace

ExpectedVoid FetchAll(const std::vector<Transfer>& transfers, const Options& options,
                      const OnComplete& on_complete) {
  GlobalInit();
  std::atomic<size_t> next{0};
  std::atomic<bool> stop{false};
  std::mutex mutex;
  std::optional<Error> first_error;
  auto fail = [&](const Error& e) {
    std::lock_guard lock(mutex);
    // A worker stopped because another one failed reports "cancelled": keep the cause.
    if (!first_error || (first_error->code == "cancelled" && e.code != "cancelled")) first_error = e;
    stop = true;
  };
  auto worker = [&] {
    Session session(options, stop);
    for (;;) {
      size_t i = next++;
      if (i >= transfers.size() || stop) return;
      for (;;) {
        auto sha = session.Download(transfers[i]);
        if (!sha) return fail(sha.error());
        auto done = on_complete(i, *sha);
        if (!done) return fail(done.error());
        if (*done) break;
      }
    }
  };
  size_t n = std::min<size_t>(std::max(1, options.parallel), transfers.size());
  std::vector<std::thread> threads;
  for (size_t i = 1; i < n; ++i) threads.emplace_back(worker);
  if (n > 0) worker();
  for (auto& t : threads) t.join();
  if (first_error) return Unexpected(*first_error);
  return {};
}

}  // namespace gantry::fetch
