#include "service/web/grpc_web_gateway.h"

#include <pthread.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "boost/asio.hpp"
#include "boost/asio/ssl.hpp"
#include "boost/beast/core.hpp"
#include "boost/beast/http.hpp"
#include "boost/beast/ssl.hpp"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "service/web/cors.h"
#include "service/web/grpc_web_codec.h"
#include "service/web/web_peer.h"

namespace uploadwatch::web {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;

// Pipelined bytes a client may send while its answer streams; browsers never
// pipeline, so this only bounds a misbehaving client.
constexpr size_t kMaxPipelinedBytes = 16 * 1024;
// Static files are the dashboard's few small files.
constexpr size_t kMaxStaticFileBytes = 16 * 1024 * 1024;

// What a forwarded call reports back to its HTTP session, on the event loop.
class CallSink {
 public:
  virtual ~CallSink() = default;
  // One response message (serialized protobuf).
  virtual void OnMessage(std::string bytes) = 0;
  // No more messages will come (the call is ending).
  virtual void OnReadEnd() = 0;
  // The call's end: status, and the server's other trailing metadata.
  virtual void OnFinish(grpc::Status status, TrailerMap extra) = 0;
};

std::string ToString(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  std::string out;
  if (!buffer.Dump(&slices).ok()) return out;
  out.reserve(buffer.Length());
  for (const grpc::Slice& s : slices) {
    out.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  return out;
}

std::string PeerString(const tcp::endpoint& endpoint) {
  const net::ip::address a = endpoint.address();
  return a.is_v6() ? absl::StrCat("ipv6:[", a.to_string(), "]:", endpoint.port())
                   : absl::StrCat("ipv4:", a.to_string(), ":", endpoint.port());
}

absl::string_view ContentTypeOfFile(absl::string_view path) {
  if (absl::EndsWith(path, ".html")) return "text/html; charset=utf-8";
  if (absl::EndsWith(path, ".js")) return "text/javascript; charset=utf-8";
  if (absl::EndsWith(path, ".css")) return "text/css; charset=utf-8";
  if (absl::EndsWith(path, ".svg")) return "image/svg+xml";
  if (absl::EndsWith(path, ".png")) return "image/png";
  if (absl::EndsWith(path, ".json")) return "application/json";
  if (absl::EndsWith(path, ".map")) return "application/json";
  return "application/octet-stream";
}

std::string Chunk(absl::string_view data) {
  return absl::StrCat(absl::Hex(data.size()), "\r\n", data, "\r\n");
}

}  // namespace

class GrpcWebGateway::Impl {
 public:
  Impl(Options options, std::shared_ptr<grpc::Channel> channel, CorsPolicy cors)
      : options_(std::move(options)),
        stub_(std::move(channel)),
        cors_(std::move(cors)),
        acceptor_(ioc_) {}

  ~Impl() { Shutdown(); }

  absl::Status Listen();
  void Drain(absl::Time deadline);
  void Run() {
    thread_ = std::thread([this] {
      // Named so that /proc/PID/task/*/comm tells the listener's threads
      // from gRPC's (bench/uploadwatch_bench --phases=web counts them).
      pthread_setname_np(pthread_self(), kThreadName);
      ioc_.run();
    });
  }
  void Shutdown();
  int port() const { return port_; }
  int open_connections() const { return connections_.load(); }
  int open_calls() const {
    absl::MutexLock lock(&mu_);
    return calls_;
  }

  // The parts a session uses.
  net::io_context& ioc() { return ioc_; }
  grpc::GenericStub& stub() { return stub_; }
  const CorsPolicy& cors() const { return cors_; }
  const Options& options() const { return options_; }
  bool tls() const { return tls_.has_value(); }
  bool shutting_down() const { return shutting_down_.load(); }

  void CallStarted() {
    absl::MutexLock lock(&mu_);
    ++calls_;
  }
  void CallDone() {
    absl::MutexLock lock(&mu_);
    --calls_;
  }

  // Event loop only.
  class SessionBase;
  void Register(SessionBase* s) {
    sessions_.insert(s);
    ++connections_;
  }
  void Unregister(SessionBase* s) {
    sessions_.erase(s);
    --connections_;
  }

 private:
  void Accept();
  template <typename Stream>
  void StartSession(Stream stream, tcp::endpoint peer);

  // Declared before the event loop: whatever its handlers still hold when
  // it is destroyed (sessions, TLS streams) may use these.
  const Options options_;
  grpc::GenericStub stub_;
  const CorsPolicy cors_;
  mutable absl::Mutex mu_;
  int calls_ ABSL_GUARDED_BY(mu_) = 0;
  std::set<SessionBase*> sessions_;  // event loop only
  std::atomic<int> connections_{0};
  std::optional<ssl::context> tls_;

  net::io_context ioc_;
  // The loop must not return while a call can still report to it: in
  // shutdown, a session may be kept only by its call (no socket operation
  // pending) until the call posts its end.
  net::executor_work_guard<net::io_context::executor_type> work_ =
      net::make_work_guard(ioc_);
  tcp::acceptor acceptor_;
  std::optional<net::steady_timer> accept_retry_;
  std::thread thread_;
  int port_ = 0;
  std::atomic<bool> shutting_down_{false};
  bool shut_down_ = false;  // Shutdown() caller only
};

// The session's side of a connection that Shutdown can close.
class GrpcWebGateway::Impl::SessionBase {
 public:
  virtual ~SessionBase() = default;
  // Event loop only: ends the connection (cancelling its call) now.
  virtual void Close() = 0;
  // Event loop only: Close() unless an answer is under way (which then
  // closes the connection when it is complete).
  virtual void CloseIfIdle() = 0;
};

namespace {

using Impl = GrpcWebGateway::Impl;

// One forwarded call: a generic bidi-streaming call (every rpc kind looks
// the same on the wire) that writes the one request message and reads the
// answers one at a time, the next only when the session asks, so a slow
// browser holds back the stream instead of filling memory. The session holds
// a hold on the reactor while it may call ReadNext or Cancel, and releases it
// once it never will; the reactor deletes itself in OnDone.
class ForwardedCall final
    : public grpc::ClientBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  ForwardedCall(Impl* gateway, std::shared_ptr<CallSink> sink,
                std::string method)
      : gateway_(gateway), sink_(std::move(sink)), method_(std::move(method)) {}

  grpc::ClientContext& context() { return context_; }

  void Start(std::string request) {
    gateway_->CallStarted();
    grpc::Slice slice(request);
    request_ = grpc::ByteBuffer(&slice, 1);
    gateway_->stub().PrepareBidiStreamingCall(&context_, method_,
                                              grpc::StubOptions(), this);
    AddHold();
    StartWriteLast(&request_, grpc::WriteOptions());
    StartRead(&response_);
    StartCall();
  }

  // Session side, while it holds the call.
  void ReadNext() { StartRead(&response_); }
  void Cancel() { context_.TryCancel(); }
  void Release() { RemoveHold(); }

  void OnReadDone(bool ok) override {
    if (!ok) {
      net::post(gateway_->ioc(), [sink = sink_] { sink->OnReadEnd(); });
      return;
    }
    std::string bytes = ToString(response_);
    response_.Clear();
    net::post(gateway_->ioc(), [sink = sink_, bytes = std::move(bytes)]() mutable {
      sink->OnMessage(std::move(bytes));
    });
  }

  void OnDone(const grpc::Status& status) override {
    TrailerMap extra;
    for (const auto& [key, value] : context_.GetServerTrailingMetadata()) {
      std::string k(key.data(), key.size());
      std::string v(value.data(), value.size());
      if (absl::StartsWith(k, "grpc-")) continue;  // carried by the status
      if (absl::EndsWith(k, "-bin")) {
        v = EncodeText(v);
        while (!v.empty() && v.back() == '=') v.pop_back();
      }
      extra[std::move(k)] = std::move(v);
    }
    // The session's last reference from here leaves with this report, so
    // it is released on the event loop, never on this thread.
    net::post(gateway_->ioc(),
              [sink = std::move(sink_), status, extra = std::move(extra)]() mutable {
                sink->OnFinish(std::move(status), std::move(extra));
              });
    Impl* gateway = gateway_;
    delete this;
    gateway->CallDone();
  }

 private:
  Impl* const gateway_;
  std::shared_ptr<CallSink> sink_;  // moved out in OnDone
  const std::string method_;
  grpc::ClientContext context_;
  grpc::ByteBuffer request_;
  grpc::ByteBuffer response_;
};

// One HTTP/1.1 connection (plain or TLS). Lives on the event loop; kept
// alive by its pending operations and its call's reports.
template <typename Stream>
class Session final : public Impl::SessionBase,
                      public CallSink,
                      public std::enable_shared_from_this<Session<Stream>> {
 public:
  Session(Impl* gateway, Stream stream, tcp::endpoint peer)
      : gateway_(gateway),
        stream_(std::move(stream)),
        peer_(PeerString(peer)),
        buffer_(gateway->options().max_request_header_bytes +
                gateway->options().max_request_body_bytes) {
    gateway_->Register(this);
  }
  ~Session() override { gateway_->Unregister(this); }

  void Begin() {
    if constexpr (std::is_same_v<Stream, beast::tcp_stream>) {
      ReadRequest();
    } else {
      Lowest().expires_after(ToChrono(gateway_->options().request_timeout));
      stream_.async_handshake(
          ssl::stream_base::server,
          [self = this->shared_from_this()](beast::error_code ec) {
            if (ec) return self->Close();
            self->ReadRequest();
          });
    }
  }

  void Close() override {
    if (closed_) return;
    closed_ = true;
    if (held_) call_->Cancel();
    beast::error_code ignored;
    Lowest().socket().shutdown(tcp::socket::shutdown_both, ignored);
    Lowest().close();
  }

  void CloseIfIdle() override {
    if (!in_call_ && !writing_) Close();
  }

  // CallSink.
  void OnMessage(std::string bytes) override {
    if (closed_) return Release();
    std::string frame = Frame(kDataFrame, bytes);
    if (mode_ == WireMode::kText) frame = EncodeText(frame);
    std::string out;
    if (!headers_sent_) {
      out = ResponseHead();
      headers_sent_ = true;
    }
    out += chunked_ ? Chunk(frame) : frame;
    Write(std::move(out), [this](bool ok) {
      if (!ok || closed_) return Release();
      call_->ReadNext();
    });
  }

  void OnReadEnd() override { Release(); }

  void OnFinish(grpc::Status status, TrailerMap extra) override {
    in_call_ = false;
    if (closed_) return;
    std::string message = status.error_message();
    if (status.error_code() == grpc::StatusCode::UNIMPLEMENTED &&
        message.empty()) {
      // gRPC sends no message for an unknown method, nor for one the
      // service declares but does not implement.
      message = absl::StrCat("this server does not implement ", method_,
                             " (no such method, or not served yet)");
    }
    TrailerMap trailers =
        StatusTrailers(status.error_code(), message, status.error_details());
    trailers.merge(extra);
    if (!headers_sent_) {
      // Trailers-only: the status travels in the headers, no body.
      return Respond(TrailersOnly(trailers));
    }
    std::string frame = Frame(kTrailerFrame, TrailerBlock(trailers));
    if (mode_ == WireMode::kText) frame = EncodeText(frame);
    std::string out = chunked_ ? Chunk(frame) + "0\r\n\r\n" : frame;
    Write(std::move(out), [this](bool ok) { AfterResponse(ok); });
  }

 private:
  using Request = http::request<http::string_body>;

  beast::tcp_stream& Lowest() { return beast::get_lowest_layer(stream_); }

  static std::chrono::steady_clock::duration ToChrono(absl::Duration d) {
    return absl::ToChronoNanoseconds(d);
  }

  void ReadRequest() {
    if (closed_) return;
    if (gateway_->shutting_down()) return Close();
    next_request_ = false;
    parser_.emplace();
    parser_->header_limit(
        static_cast<uint32_t>(gateway_->options().max_request_header_bytes));
    parser_->body_limit(gateway_->options().max_request_body_bytes);
    // The idle timeout until the first byte, then the request's own.
    Lowest().expires_after(ToChrono(buffer_.size() > 0
                                        ? gateway_->options().request_timeout
                                        : gateway_->options().idle_timeout));
    http::async_read_header(
        stream_, buffer_, *parser_,
        [self = this->shared_from_this()](beast::error_code ec, size_t) {
          self->OnHeader(ec);
        });
  }

  void OnHeader(beast::error_code ec) {
    if (ec) return OnReadError(ec);
    Lowest().expires_after(ToChrono(gateway_->options().request_timeout));
    // curl and others wait for this before sending a body over 1 KiB.
    if (absl::EqualsIgnoreCase(
            std::string(parser_->get()[http::field::expect]), "100-continue")) {
      return Write("HTTP/1.1 100 Continue\r\n\r\n", [this](bool ok) {
        if (!ok || closed_) return Close();
        Lowest().expires_after(ToChrono(gateway_->options().request_timeout));
        ReadBody();
      });
    }
    ReadBody();
  }

  void ReadBody() {
    http::async_read(
        stream_, buffer_, *parser_,
        [self = this->shared_from_this()](beast::error_code ec, size_t) {
          if (ec) return self->OnReadError(ec);
          self->Lowest().expires_never();
          self->Handle(self->parser_->release());
        });
  }

  void OnReadError(beast::error_code ec) {
    if (closed_) return;
    keep_alive_ = false;
    if (ec == http::error::body_limit) {
      return Respond(Plain(http::status::payload_too_large,
                           absl::StrCat("request body over ",
                                        gateway_->options().max_request_body_bytes,
                                        " bytes\n")));
    }
    if (ec == http::error::header_limit) {
      return Respond(Plain(http::status::request_header_fields_too_large,
                           absl::StrCat("request headers over ",
                                        gateway_->options().max_request_header_bytes,
                                        " bytes\n")));
    }
    const bool parse_error =
        ec.category() ==
            http::make_error_code(http::error::bad_method).category() &&
        ec != http::error::end_of_stream && ec != http::error::partial_message;
    if (parse_error) {
      return Respond(Plain(http::status::bad_request,
                           absl::StrCat("malformed HTTP request: ", ec.message(),
                                        "\n")));
    }
    Close();  // gone, timed out, or reset: nobody to answer
  }

  std::string SelfOrigin(const Request& req) const {
    return absl::StrCat(gateway_->tls() ? "https://" : "http://",
                        std::string(req[http::field::host]));
  }

  void Handle(Request req) {
    keep_alive_ = req.keep_alive() && !gateway_->shutting_down();
    origin_ = std::string(req[http::field::origin]);
    const bool allowed = gateway_->cors().Allows(origin_, SelfOrigin(req));
    const absl::string_view target(req.target().data(), req.target().size());
    const absl::string_view path = target.substr(0, target.find('?'));
    if (!allowed) {
      return Respond(Plain(
          http::status::forbidden,
          absl::StrCat("origin ", origin_,
                       " may not call this server; start it with "
                       "--web_allowed_origins=",
                       origin_, " (or a list, or *)\n"),
          /*cors=*/false));
    }
    if (req.method() == http::verb::options) {
      auto res = Plain(http::status::no_content, "", /*cors=*/false);
      res.erase(http::field::content_type);
      for (auto& [k, v] : gateway_->cors().PreflightHeaders(origin_)) {
        res.set(k, v);
      }
      return Respond(std::move(res));
    }
    if (req.method() == http::verb::get || req.method() == http::verb::head) {
      return ServeStatic(path, req.method() == http::verb::head);
    }
    if (req.method() != http::verb::post) {
      auto res = Plain(http::status::method_not_allowed,
                       "gRPC-Web calls are POST; pages are GET\n");
      res.set(http::field::allow, "GET, HEAD, POST, OPTIONS");
      return Respond(std::move(res));
    }
    if (!IsRpcPath(path)) {
      return Respond(Plain(
          http::status::not_found,
          absl::StrCat("no rpc at ", path,
                       ": gRPC-Web calls go to /package.Service/Method, e.g. "
                       "/metrika.offline_conversions.v1.UploadingService/"
                       "GetUploading\n")));
    }
    absl::StatusOr<WireMode> mode =
        ParseContentType(std::string(req[http::field::content_type]));
    if (!mode.ok()) {
      return Respond(Plain(http::status::unsupported_media_type,
                           absl::StrCat(mode.status().message(), "\n")));
    }
    mode_ = *mode;
    method_ = std::string(path);
    chunked_ = req.version() >= 11;
    if (!chunked_) keep_alive_ = false;  // HTTP/1.0: the end of the body is the close

    absl::StatusOr<std::string> body = req.body();
    if (mode_ == WireMode::kText) body = DecodeTextBody(*body);
    absl::StatusOr<std::string> message =
        body.ok() ? ParseRequestBody(*body) : body.status();
    if (!message.ok()) return EarlyError(message.status());

    auto call = std::make_unique<ForwardedCall>(
        gateway_, this->shared_from_this(), method_);
    grpc::ClientContext& context = call->context();
    const auto timeout = req.find("grpc-timeout");
    if (timeout != req.end()) {
      absl::StatusOr<absl::Duration> d = ParseGrpcTimeout(
          absl::string_view(timeout->value().data(), timeout->value().size()));
      if (!d.ok()) return EarlyError(d.status());
      context.set_deadline(absl::ToChronoTime(absl::Now() + *d));
    }
    const auto authorization = req.find(http::field::authorization);
    if (authorization != req.end()) {
      const std::string value(authorization->value());
      if (!IsMetadataValue(value)) {
        return EarlyError(absl::UnauthenticatedError(
            "the authorization header has bytes outside printable ASCII; "
            "send 'OAuth <token>'"));
      }
      context.AddMetadata("authorization", value);
    }
    context.AddMetadata(kWebPeerMetadata, peer_);

    call_ = call.release();
    held_ = true;
    in_call_ = true;
    headers_sent_ = false;
    WatchClient();
    call_->Start(*std::move(message));
  }

  // A gRPC error found before any call: trailers-only, like the server's own.
  void EarlyError(const absl::Status& status) {
    Respond(TrailersOnly(StatusTrailers(static_cast<int>(status.code()),
                                        status.message(), "")));
  }

  // While the answer streams, a read that tells when the client goes away.
  void WatchClient() {
    if (watching_) return;
    if (buffer_.size() > kMaxPipelinedBytes) return Close();
    watching_ = true;
    stream_.async_read_some(
        buffer_.prepare(1024),
        [self = this->shared_from_this()](beast::error_code ec, size_t n) {
          self->watching_ = false;
          if (ec) return self->Close();  // gone: cancels the call
          self->buffer_.commit(n);
          if (self->in_call_ || self->writing_) {
            if (self->buffer_.size() > kMaxPipelinedBytes) return self->Close();
            return self->WatchClient();
          }
          if (self->next_request_) self->ReadRequest();
          // Else the answer's last write is under way: AfterResponse reads.
        });
  }

  void Release() {
    if (!held_) return;
    held_ = false;
    ForwardedCall* call = call_;
    call_ = nullptr;
    call->Release();
  }

  http::response<http::string_body> Plain(http::status status,
                                          std::string body, bool cors = true) {
    http::response<http::string_body> res{status, 11};
    res.set(http::field::content_type, "text/plain; charset=utf-8");
    if (cors) {
      for (auto& [k, v] : gateway_->cors().ResponseHeaders(origin_)) {
        res.set(k, v);
      }
    } else {
      res.set(http::field::vary, "Origin");
    }
    res.body() = std::move(body);
    return res;
  }

  http::response<http::string_body> TrailersOnly(const TrailerMap& trailers) {
    auto res = Plain(http::status::ok, "");
    res.set(http::field::content_type, std::string(ResponseContentType(mode_)));
    for (const auto& [k, v] : trailers) res.set(k, v);
    return res;
  }

  std::string ResponseHead() {
    http::response<http::empty_body> res{http::status::ok, chunked_ ? 11 : 10};
    res.set(http::field::content_type, std::string(ResponseContentType(mode_)));
    for (auto& [k, v] : gateway_->cors().ResponseHeaders(origin_)) res.set(k, v);
    if (chunked_) {
      res.chunked(true);
      res.keep_alive(keep_alive_);
    } else {
      res.set(http::field::connection, "close");
    }
    std::ostringstream head;
    head << res.base();
    return head.str();
  }

  void ServeStatic(absl::string_view path, bool head_only) {
    const std::string& root = gateway_->options().static_dir;
    std::string relative(path == "/" ? "/index.html" : path);
    const bool safe = !root.empty() && absl::StartsWith(relative, "/") &&
                      !absl::StrContains(relative, "..") &&
                      !absl::StrContains(relative, "//") &&
                      !absl::StrContains(relative, "\\");
    std::string content;
    bool found = false;
    if (safe) {
      std::ifstream in(root + relative, std::ios::binary);
      if (in) {
        in.seekg(0, std::ios::end);
        const std::streamoff size = in.tellg();
        in.seekg(0);
        if (size >= 0 && static_cast<size_t>(size) <= kMaxStaticFileBytes) {
          content.resize(static_cast<size_t>(size));
          found = static_cast<bool>(in.read(content.data(), size));
        }
      }
    }
    if (!found) {
      return Respond(Plain(
          http::status::not_found,
          root.empty() ? "no page here: this listener serves gRPC-Web (POST)\n"
                       : absl::StrCat("no file ", path, "\n")));
    }
    auto res = Plain(http::status::ok, std::move(content));
    res.set(http::field::content_type, std::string(ContentTypeOfFile(relative)));
    res.set(http::field::cache_control, "no-cache");
    res.prepare_payload();
    if (head_only) res.body().clear();
    Respond(std::move(res), /*prepared=*/true);
  }

  void Respond(http::response<http::string_body> res, bool prepared = false) {
    res.keep_alive(keep_alive_);
    if (!prepared) res.prepare_payload();
    std::ostringstream out;
    out << res;
    Write(out.str(), [this](bool ok) { AfterResponse(ok); });
  }

  // One write at a time; `then(ok)` runs on the event loop after it.
  template <typename Then>
  void Write(std::string data, Then then) {
    writing_ = true;
    out_ = std::move(data);
    Lowest().expires_after(ToChrono(gateway_->options().write_timeout));
    net::async_write(stream_, net::buffer(out_),
                     [self = this->shared_from_this(), then](
                         beast::error_code ec, size_t) {
                       self->writing_ = false;
                       self->out_.clear();
                       if (!self->closed_) self->Lowest().expires_never();
                       if (ec) self->Close();
                       then(!ec);
                     });
  }

  void AfterResponse(bool ok) {
    if (!ok || closed_) return Close();
    if (!keep_alive_ || gateway_->shutting_down()) return Close();
    // The client-watching read may still be pending: it starts the next
    // request when it completes.
    if (watching_) {
      next_request_ = true;
      Lowest().expires_after(ToChrono(gateway_->options().idle_timeout));
      return;
    }
    ReadRequest();
  }

  Impl* const gateway_;
  Stream stream_;
  const std::string peer_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::string out_;
  std::string origin_;
  std::string method_;
  WireMode mode_ = WireMode::kBinary;
  ForwardedCall* call_ = nullptr;  // valid while held_
  bool held_ = false;
  bool in_call_ = false;
  bool headers_sent_ = false;
  bool chunked_ = true;
  bool keep_alive_ = true;
  bool writing_ = false;
  bool watching_ = false;
  bool next_request_ = false;
  bool closed_ = false;
};

}  // namespace

absl::Status Impl::Listen() {
  if (!options_.tls_cert_pem.empty() || !options_.tls_key_pem.empty()) {
    if (options_.tls_cert_pem.empty() || options_.tls_key_pem.empty()) {
      return absl::InvalidArgumentError(
          "TLS on the web listener needs both a certificate and its key");
    }
    tls_.emplace(ssl::context::tls_server);
    tls_->set_options(ssl::context::default_workarounds |
                      ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                      ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
    beast::error_code ec;
    tls_->use_certificate_chain(net::buffer(options_.tls_cert_pem), ec);
    if (!ec) {
      tls_->use_private_key(net::buffer(options_.tls_key_pem),
                            ssl::context::pem, ec);
    }
    if (!ec && !options_.tls_client_ca_pem.empty()) {
      tls_->add_certificate_authority(net::buffer(options_.tls_client_ca_pem),
                                      ec);
      tls_->set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
    }
    if (ec) {
      return absl::InvalidArgumentError(absl::StrCat(
          "web listener: unusable TLS certificate, key or client CA: ",
          ec.message()));
    }
  } else if (!options_.tls_client_ca_pem.empty()) {
    return absl::InvalidArgumentError(
        "a client CA (mTLS) needs the server's own certificate and key too");
  }

  const size_t colon = options_.listen.rfind(':');
  int port = -1;
  if (colon == std::string::npos ||
      !absl::SimpleAtoi(options_.listen.substr(colon + 1), &port) || port < 0 ||
      port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--web_listen must be host:port, got '", options_.listen, "'"));
  }
  std::string host = options_.listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[') {
    host = host.substr(1, host.size() - 2);
  }
  beast::error_code ec;
  const net::ip::address address = net::ip::make_address(
      host.empty() ? "0.0.0.0" : host == "localhost" ? "127.0.0.1" : host, ec);
  if (ec) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--web_listen: '", host, "' is not an IP address (", ec.message(), ")"));
  }
  const tcp::endpoint endpoint(address, static_cast<uint16_t>(port));
  acceptor_.open(endpoint.protocol(), ec);
  if (!ec) acceptor_.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_.bind(endpoint, ec);
  if (!ec) acceptor_.listen(net::socket_base::max_listen_connections, ec);
  if (ec) {
    return absl::UnavailableError(absl::StrCat(
        "cannot listen for gRPC-Web on ", options_.listen, ": ", ec.message()));
  }
  port_ = acceptor_.local_endpoint().port();
  Accept();
  return absl::OkStatus();
}

void Impl::Accept() {
  acceptor_.async_accept([this](beast::error_code ec, tcp::socket socket) {
    if (shutting_down_) return;
    if (ec) {
      // Out of file descriptors and the like: try again in a moment rather
      // than spin.
      accept_retry_.emplace(ioc_, std::chrono::milliseconds(100));
      accept_retry_->async_wait([this](beast::error_code) {
        if (!shutting_down_) Accept();
      });
      return;
    }
    if (connections_.load() >= options_.max_connections) {
      beast::error_code ignored;
      socket.close(ignored);
      return Accept();
    }
    beast::error_code peer_ec;
    const tcp::endpoint peer = socket.remote_endpoint(peer_ec);
    socket.set_option(net::socket_base::keep_alive(true), peer_ec);
    socket.set_option(tcp::no_delay(true), peer_ec);
    if (tls_.has_value()) {
      StartSession(beast::ssl_stream<beast::tcp_stream>(
                       beast::tcp_stream(std::move(socket)), *tls_),
                   peer);
    } else {
      StartSession(beast::tcp_stream(std::move(socket)), peer);
    }
    Accept();
  });
}

template <typename Stream>
void Impl::StartSession(Stream stream, tcp::endpoint peer) {
  std::make_shared<Session<Stream>>(this, std::move(stream), peer)->Begin();
}

void Impl::Drain(absl::Time deadline) {
  if (!thread_.joinable() || shut_down_) return;
  shutting_down_ = true;
  net::post(ioc_, [this] {
    beast::error_code ignored;
    acceptor_.close(ignored);
    const std::vector<SessionBase*> open(sessions_.begin(), sessions_.end());
    for (SessionBase* s : open) s->CloseIfIdle();
  });
  absl::MutexLock lock(&mu_);
  mu_.AwaitWithDeadline(
      absl::Condition(+[](int* calls) { return *calls == 0; }, &calls_),
      deadline);
}

void Impl::Shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  shutting_down_ = true;
  if (!thread_.joinable()) return;
  // Idle connections close now, answers under way get a moment to finish
  // (after the gRPC server's shutdown they are only trailers), then
  // everything closes.
  const auto close_all = [this](bool only_idle) {
    net::post(ioc_, [this, only_idle] {
      beast::error_code ignored;
      acceptor_.close(ignored);
      if (accept_retry_.has_value()) accept_retry_->cancel();
      const std::vector<SessionBase*> open(sessions_.begin(), sessions_.end());
      for (SessionBase* s : open) only_idle ? s->CloseIfIdle() : s->Close();
    });
  };
  const auto drained = [this](absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    absl::MutexLock lock(&mu_);
    while (calls_ != 0 || connections_.load() != 0) {
      if (absl::Now() >= deadline) return false;
      // Connections are counted on the loop, not under mu_: poll briefly.
      mu_.AwaitWithTimeout(absl::Condition(+[](int* calls) { return *calls == 0; },
                                           &calls_),
                           absl::Milliseconds(10));
      if (calls_ == 0) {
        mu_.Unlock();
        absl::SleepFor(absl::Milliseconds(5));
        mu_.Lock();
      }
    }
    return true;
  };
  close_all(/*only_idle=*/true);
  if (!drained(absl::Seconds(2))) {
    close_all(/*only_idle=*/false);
    // Calls report their end through the loop: it runs until the last one.
    while (!drained(absl::Seconds(5))) {
      std::fprintf(stderr,
                   "gRPC-Web gateway: shutting down, still %d call(s) and %d "
                   "connection(s) open\n",
                   open_calls(), open_connections());
    }
  }
  ioc_.stop();
  thread_.join();
}

GrpcWebGateway::GrpcWebGateway(std::unique_ptr<Impl> impl)
    : impl_(std::move(impl)) {}

GrpcWebGateway::~GrpcWebGateway() { Shutdown(); }

absl::StatusOr<std::unique_ptr<GrpcWebGateway>> GrpcWebGateway::Start(
    Options options, std::shared_ptr<grpc::Channel> channel) {
  absl::StatusOr<CorsPolicy> cors = CorsPolicy::Parse(options.allowed_origins);
  if (!cors.ok()) return cors.status();
  auto impl = std::make_unique<Impl>(std::move(options), std::move(channel),
                                     *std::move(cors));
  if (absl::Status s = impl->Listen(); !s.ok()) return s;
  impl->Run();
  return std::unique_ptr<GrpcWebGateway>(new GrpcWebGateway(std::move(impl)));
}

int GrpcWebGateway::port() const { return impl_->port(); }
void GrpcWebGateway::Drain(absl::Time deadline) { impl_->Drain(deadline); }
void GrpcWebGateway::Shutdown() { impl_->Shutdown(); }
int GrpcWebGateway::open_connections() const {
  return impl_->open_connections();
}
int GrpcWebGateway::open_calls() const { return impl_->open_calls(); }

}  // namespace uploadwatch::web
