#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/ip/address.hpp>

namespace drawbridge::server {

// Which browsers may talk to the gateway. A loopback gateway is reachable from every web page
// the operator opens: a page may send requests (Host is the attacker's name after a DNS
// rebinding) and open WebSockets (Origin is the page's). Both headers are checked.
struct OriginPolicy {
  std::string bind_address;  // as listened on: "127.0.0.1", "0.0.0.0", "::1", ...
  int port = 0;              // the port really served
  std::vector<std::string> allowed_origins;  // exact "scheme://host[:port]", or "*"
  std::vector<std::string> allowed_hosts;    // host names (no port), or "*"

  // The Host header: loopback names and literals always; the bind address; allowed_hosts.
  // A wildcard bind (0.0.0.0, ::) serves any name unless allowed_hosts restricts it. An empty
  // Host (HTTP/1.0, not a browser) is accepted.
  bool host_allowed(std::string_view host_header) const;
  // The Origin header of a WebSocket upgrade: none (not a browser), "null" never, the gateway's
  // own origin (http(s)://<an allowed host>:<port>), or one of allowed_origins.
  bool origin_allowed(std::string_view origin) const;
};

// The host part of a Host header or of an origin's authority, lower-cased, without brackets
// and port ("[::1]:8080" -> "::1"); empty when it cannot be parsed.
std::string host_of(std::string_view authority);

// One key per peer for limits and throttling: every loopback address (127.0.0.0/8, ::1) is
// one peer, an IPv4-mapped IPv6 address is its IPv4 address.
std::string peer_key(const boost::asio::ip::address& address);

}  // namespace drawbridge::server
