#pragma once

// A TCP → Unix-socket forwarder on 127.0.0.1 whose link can be cut and healed: a replica's
// network to PostgreSQL, for tests/e2e/cluster_test.cpp. cut() closes every forwarded
// connection and closes new ones at once (as a dead route would fail them); heal() forwards
// again. Runs on a thread of its own; everything ends with the object.

#include <atomic>
#include <boost/asio.hpp>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace drawbridge::e2e {

class CutProxy {
 public:
  explicit CutProxy(std::string unix_path)
      : path_(std::move(unix_path)),
        acceptor_(io_, {boost::asio::ip::make_address("127.0.0.1"), 0}),
        guard_(io_.get_executor()) {
    accept();
    thread_ = std::thread([this] { io_.run(); });
  }
  ~CutProxy() {
    guard_.reset();
    boost::asio::post(io_, [this] {
      boost::system::error_code ec;
      acceptor_.close(ec);
      close_all();
    });
    io_.stop();
    thread_.join();
  }
  CutProxy(const CutProxy&) = delete;
  CutProxy& operator=(const CutProxy&) = delete;

  int port() const { return acceptor_.local_endpoint().port(); }
  void cut() {
    cut_ = true;
    boost::asio::post(io_, [this] { close_all(); });
  }
  void heal() { cut_ = false; }

 private:
  struct Pair {
    explicit Pair(boost::asio::io_context& io) : tcp(io), unix(io) {}
    boost::asio::ip::tcp::socket tcp;
    boost::asio::local::stream_protocol::socket unix;
    std::array<char, 16384> up{}, down{};
  };

  void accept() {
    acceptor_.async_accept([this](boost::system::error_code ec, boost::asio::ip::tcp::socket s) {
      if (ec) return;
      if (!cut_) {
        auto p = std::make_shared<Pair>(io_);
        p->tcp = std::move(s);
        boost::system::error_code uec;
        p->unix.connect(boost::asio::local::stream_protocol::endpoint(path_), uec);
        if (!uec) {
          pairs_.push_back(p);
          pump(p, p->tcp, p->unix, p->up);
          pump(p, p->unix, p->tcp, p->down);
        }
      }  // cut: `s` is closed here
      accept();
    });
  }

  template <class From, class To>
  void pump(std::shared_ptr<Pair> p, From& from, To& to, std::array<char, 16384>& buf) {
    from.async_read_some(
        boost::asio::buffer(buf),
        [this, p, &from, &to, &buf](boost::system::error_code ec, std::size_t n) {
          if (ec) return close(p);
          boost::asio::async_write(
              to, boost::asio::buffer(buf.data(), n),
              [this, p, &from, &to, &buf](boost::system::error_code wec, std::size_t) {
                if (wec) return close(p);
                pump(p, from, to, buf);
              });
        });
  }

  void close(const std::shared_ptr<Pair>& p) {
    boost::system::error_code ec;
    p->tcp.close(ec);
    p->unix.close(ec);
  }
  void close_all() {
    for (auto& p : pairs_) close(p);
    pairs_.clear();
  }

  std::string path_;
  boost::asio::io_context io_;
  boost::asio::ip::tcp::acceptor acceptor_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard_;
  std::vector<std::shared_ptr<Pair>> pairs_;
  std::atomic<bool> cut_{false};
  std::thread thread_;
};

}  // namespace drawbridge::e2e
