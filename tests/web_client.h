#ifndef UPLOADWATCH_TESTS_WEB_CLIENT_H_
#define UPLOADWATCH_TESTS_WEB_CLIENT_H_

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "boost/asio.hpp"
#include "boost/asio/ssl.hpp"
#include "boost/beast/core.hpp"
#include "boost/beast/http.hpp"
#include "boost/beast/ssl.hpp"

namespace uploadwatch::testing {

// A gRPC-Web client for tests, on Boost.Beast's client side: one HTTP/1.1
// connection (plain or TLS), requests written as given, answers read
// incrementally so a test sees each frame when it arrives. Every read and
// write has a timeout (a hung server fails the test, not the run). Not
// thread-safe.
class WebClient {
 public:
  struct Frame {
    uint8_t flags = 0;
    std::string payload;
  };
  struct Response {
    int status = 0;                              // HTTP status
    std::map<std::string, std::string> headers;  // names in lower case
    std::string body;                            // de-chunked
    std::vector<Frame> frames;                   // data frames
    // The trailer frame's, or for a trailers-only answer the headers' grpc-*.
    std::map<std::string, std::string> trailers;
    bool trailer_frame = false;
    std::string error;  // a transport or framing problem, "" when none
  };

  // Connects to 127.0.0.1:port; with `ca_pem`, over TLS verifying the
  // server against it (and presenting cert/key when given).
  explicit WebClient(int port, std::string ca_pem = "",
                     std::string cert_pem = "", std::string key_pem = "")
      : tls_context_(boost::asio::ssl::context::tls_client) {
    namespace net = boost::asio;
    boost::beast::error_code ec;
    beast_tcp().expires_after(kTimeout);
    net::ip::tcp::endpoint endpoint(net::ip::make_address("127.0.0.1"),
                                    static_cast<uint16_t>(port));
    if (!ca_pem.empty()) {
      tls_context_.add_certificate_authority(net::buffer(ca_pem), ec);
      tls_context_.set_verify_mode(net::ssl::verify_peer);
      if (!cert_pem.empty()) {
        tls_context_.use_certificate_chain(net::buffer(cert_pem), ec);
        tls_context_.use_private_key(net::buffer(key_pem),
                                     net::ssl::context::pem, ec);
      }
      tls_.emplace(boost::beast::tcp_stream(ioc_), tls_context_);
    }
    Run([&](auto done) { beast_tcp().async_connect(endpoint, done); }, ec);
    if (!ec && tls_.has_value()) {
      Run([&](auto done) {
        tls_->async_handshake(net::ssl::stream_base::client, done);
      }, ec);
    }
    connect_error_ = ec ? ec.message() : "";
  }

  // "" when connected (and, over TLS, handshaken).
  const std::string& connect_error() const { return connect_error_; }

  // Writes raw bytes (to send malformed HTTP).
  bool WriteRaw(const std::string& bytes) {
    boost::beast::error_code ec;
    WithStream([&](auto& s) {
      Run([&](auto done) {
        boost::asio::async_write(s, boost::asio::buffer(bytes), done);
      }, ec);
    });
    return !ec;
  }

  // Sends a gRPC-Web POST to `path` with `body` as is (already framed, and
  // base64 in text mode) and extra headers.
  bool Send(const std::string& path, const std::string& body,
            const std::map<std::string, std::string>& headers,
            const std::string& method = "POST") {
    namespace http = boost::beast::http;
    http::request<http::string_body> req{http::string_to_verb(method), path, 11};
    req.set(http::field::host, "127.0.0.1");
    for (const auto& [k, v] : headers) req.set(k, v);
    req.body() = body;
    req.prepare_payload();
    boost::beast::error_code ec;
    WithStream([&](auto& s) {
      Run([&](auto done) { http::async_write(s, req, done); }, ec);
    });
    ExpectAnswer();
    return !ec;
  }

  // Prepares to read an answer (Send does it; after WriteRaw, call it).
  void ExpectAnswer() {
    parser_.emplace();
    parser_->body_limit(64 * 1024 * 1024);
    consumed_ = 0;
  }

  // Reads the status line and headers of the answer to the last Send.
  bool ReadHeader(Response* r) {
    boost::beast::error_code ec;
    WithStream([&](auto& s) {
      Run([&](auto done) {
        boost::beast::http::async_read_header(s, buffer_, *parser_, done);
      }, ec);
    });
    if (ec) {
      r->error = ec.message();
      return false;
    }
    const auto& res = parser_->get();
    r->status = res.result_int();
    for (const auto& field : res) {
      r->headers[absl::AsciiStrToLower(std::string(field.name_string()))] =
          std::string(field.value());
    }
    return true;
  }

  // The next frame of a binary answer (data or trailer), reading as needed;
  // nullopt at the end of the body or on an error (then r->error is set).
  std::optional<Frame> NextFrame(Response* r) {
    for (;;) {
      const std::string& body = parser_->get().body();
      if (body.size() - consumed_ >= 5) {
        const auto* p = reinterpret_cast<const uint8_t*>(body.data() + consumed_);
        const size_t n = (size_t{p[1]} << 24) | (size_t{p[2]} << 16) |
                         (size_t{p[3]} << 8) | p[4];
        if (body.size() - consumed_ >= 5 + n) {
          Frame f{p[0], body.substr(consumed_ + 5, n)};
          consumed_ += 5 + n;
          Record(f, r);
          return f;
        }
      }
      if (parser_->is_done()) {
        if (consumed_ != body.size()) r->error = "body ends inside a frame";
        return std::nullopt;
      }
      if (!ReadSome(r)) return std::nullopt;
    }
  }

  // Reads the rest of the answer; frames are parsed (text mode decoded).
  void ReadToEnd(Response* r, bool text) {
    while (!parser_->is_done()) {
      if (!ReadSome(r)) return;
    }
    r->body = parser_->get().body();
    std::string bytes = r->body;
    if (text) {
      // Every piece padded: decode 4-character groups up to each '='.
      std::string decoded;
      size_t begin = 0;
      while (begin < bytes.size()) {
        size_t end = begin;
        while (end < bytes.size()) {
          const size_t next = std::min(end + 4, bytes.size());
          const bool padded = bytes.substr(end, next - end).find('=') !=
                              std::string::npos;
          end = next;
          if (padded) break;
        }
        std::string piece;
        if (!absl::Base64Unescape(bytes.substr(begin, end - begin), &piece)) {
          r->error = "answer is not base64";
          return;
        }
        decoded += piece;
        begin = end;
      }
      bytes = decoded;
    }
    size_t at = 0;
    while (bytes.size() - at >= 5) {
      const auto* p = reinterpret_cast<const uint8_t*>(bytes.data() + at);
      const size_t n = (size_t{p[1]} << 24) | (size_t{p[2]} << 16) |
                       (size_t{p[3]} << 8) | p[4];
      if (bytes.size() - at < 5 + n) break;
      Record(Frame{p[0], bytes.substr(at + 5, n)}, r);
      at += 5 + n;
    }
    if (at != bytes.size()) r->error = "body ends inside a frame";
  }

  // Send + ReadHeader + ReadToEnd. `message` is framed here (and base64'd in
  // text mode); content-type defaults to the mode's.
  Response Call(const std::string& path, const std::string& message,
                std::map<std::string, std::string> headers = {},
                bool text = false) {
    headers.emplace("content-type", text ? "application/grpc-web-text"
                                         : "application/grpc-web+proto");
    std::string body = FrameOf(message);
    if (text) body = absl::Base64Escape(body);
    return CallRaw(path, body, headers, text);
  }
  Response CallRaw(const std::string& path, const std::string& body,
                   const std::map<std::string, std::string>& headers,
                   bool text = false, const std::string& method = "POST") {
    Response r;
    if (!Send(path, body, headers, method)) {
      r.error = "write failed";
      return r;
    }
    if (!ReadHeader(&r)) return r;
    ReadToEnd(&r, text);
    if (!r.trailer_frame) {  // trailers-only
      for (const auto& [k, v] : r.headers) {
        if (absl::StartsWith(k, "grpc-")) r.trailers[k] = v;
      }
    }
    return r;
  }

  static std::string FrameOf(const std::string& message, uint8_t flags = 0) {
    const uint32_t n = static_cast<uint32_t>(message.size());
    std::string out = {static_cast<char>(flags), static_cast<char>(n >> 24),
                       static_cast<char>(n >> 16), static_cast<char>(n >> 8),
                       static_cast<char>(n)};
    return out + message;
  }

  // Whether the server closed the connection (a read sees EOF) within the
  // timeout.
  bool ServerClosed() {
    boost::beast::error_code ec;
    char byte;
    WithStream([&](auto& s) {
      Run([&](auto done) {
        s.async_read_some(boost::asio::buffer(&byte, 1), done);
      }, ec);
    });
    return ec && ec != boost::beast::error::timeout;
  }

  void Close() {
    boost::beast::error_code ignored;
    beast_tcp().socket().shutdown(boost::asio::ip::tcp::socket::shutdown_both,
                                  ignored);
    beast_tcp().close();
  }

 private:
  static constexpr std::chrono::seconds kTimeout{15};

  boost::beast::tcp_stream& beast_tcp() {
    return tls_.has_value() ? boost::beast::get_lowest_layer(*tls_) : plain_;
  }

  template <typename F>
  void WithStream(F f) {
    if (tls_.has_value()) {
      f(*tls_);
    } else {
      f(plain_);
    }
  }

  // Runs one asynchronous operation to completion (or timeout).
  template <typename Start>
  void Run(Start start, boost::beast::error_code& ec) {
    bool finished = false;
    beast_tcp().expires_after(kTimeout);
    start([&](boost::beast::error_code e, auto&&...) {
      ec = e;
      finished = true;
    });
    ioc_.restart();
    while (!finished && ioc_.run_one() > 0) {
    }
    if (!finished) ec = boost::asio::error::operation_aborted;
  }

  bool ReadSome(Response* r) {
    boost::beast::error_code ec;
    WithStream([&](auto& s) {
      Run([&](auto done) {
        boost::beast::http::async_read_some(s, buffer_, *parser_, done);
      }, ec);
    });
    if (ec) {
      r->error = ec.message();
      return false;
    }
    return true;
  }

  static void Record(const Frame& f, Response* r) {
    if (f.flags & 0x80) {
      r->trailer_frame = true;
      for (absl::string_view line : absl::StrSplit(f.payload, "\r\n")) {
        const size_t colon = line.find(':');
        if (colon == absl::string_view::npos) continue;
        r->trailers[absl::AsciiStrToLower(line.substr(0, colon))] =
            std::string(absl::StripAsciiWhitespace(line.substr(colon + 1)));
      }
    } else {
      r->frames.push_back(f);
    }
  }

  boost::asio::io_context ioc_;
  boost::asio::ssl::context tls_context_;
  boost::beast::tcp_stream plain_{ioc_};
  std::optional<boost::beast::ssl_stream<boost::beast::tcp_stream>> tls_;
  boost::beast::flat_buffer buffer_;
  std::optional<boost::beast::http::response_parser<boost::beast::http::string_body>>
      parser_;
  size_t consumed_ = 0;
  std::string connect_error_;
};

}  // namespace uploadwatch::testing

#endif  // UPLOADWATCH_TESTS_WEB_CLIENT_H_
