#include "server/origin_policy.h"

#include <algorithm>
#include <cctype>

namespace drawbridge::server {

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

bool is_loopback_name(const std::string& host) {
  if (host == "localhost" || host.ends_with(".localhost")) return true;
  boost::system::error_code ec;
  auto a = boost::asio::ip::make_address(host, ec);
  return !ec && a.is_loopback();
}

bool is_wildcard(const std::string& bind) { return bind == "0.0.0.0" || bind == "::"; }

bool contains(const std::vector<std::string>& list, std::string_view v) {
  return std::any_of(list.begin(), list.end(), [&](const std::string& s) { return s == v; });
}

}  // namespace

std::string host_of(std::string_view authority) {
  if (authority.empty()) return {};
  std::string_view host;
  if (authority.front() == '[') {
    auto close = authority.find(']');
    if (close == std::string_view::npos) return {};
    host = authority.substr(1, close - 1);
    auto rest = authority.substr(close + 1);
    if (!rest.empty() && rest.front() != ':') return {};
  } else {
    auto colon = authority.find(':');
    host = authority.substr(0, colon);
    if (colon != std::string_view::npos && authority.find(':', colon + 1) != std::string_view::npos) {
      return {};  // an unbracketed IPv6 literal is not a valid authority
    }
  }
  if (host.empty() || host.size() > 253) return {};
  for (char c : host) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f || c == '/' || c == '@' || c == '\\') return {};
  }
  std::string out = lower(host);
  if (!out.empty() && out.back() == '.') out.pop_back();  // "localhost." is localhost
  return out;
}

bool OriginPolicy::host_allowed(std::string_view host_header) const {
  if (host_header.empty()) return true;
  const std::string host = host_of(host_header);
  if (host.empty()) return false;
  if (contains(allowed_hosts, "*") || contains(allowed_hosts, host)) return true;
  if (is_loopback_name(host)) return true;
  if (host == lower(bind_address)) return true;
  return is_wildcard(bind_address) && allowed_hosts.empty();
}

bool OriginPolicy::origin_allowed(std::string_view origin) const {
  if (origin.empty()) return true;
  if (contains(allowed_origins, "*") || contains(allowed_origins, origin)) return true;
  if (origin == "null") return false;  // sandboxed frames, file:// pages
  std::string_view authority;
  if (origin.starts_with("http://")) {
    authority = origin.substr(7);
  } else if (origin.starts_with("https://")) {
    authority = origin.substr(8);
  } else {
    return false;
  }
  if (authority.find('/') != std::string_view::npos) return false;
  // Our own origin: an allowed host on our port (the Control UI served by the gateway).
  std::string_view port_part;
  if (auto close = authority.rfind(']'); authority.front() == '[') {
    if (close == std::string_view::npos) return false;
    port_part = authority.substr(close + 1);
  } else if (auto colon = authority.rfind(':'); colon != std::string_view::npos) {
    port_part = authority.substr(colon);
  }
  const std::string wanted = ":" + std::to_string(port);
  const bool default_port = port_part.empty() && (port == 80 || port == 443);
  if (port_part != wanted && !default_port) return false;
  const std::string host = host_of(authority);
  if (host.empty()) return false;
  if (is_loopback_name(host)) return true;
  if (contains(allowed_hosts, host) || host == lower(bind_address)) return true;
  return false;
}

std::string peer_key(const boost::asio::ip::address& address) {
  if (address.is_v6()) {
    const auto v6 = address.to_v6();
    if (v6.is_v4_mapped()) {
      return peer_key(boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, v6));
    }
  }
  if (address.is_loopback()) return "loopback";
  return address.to_string();
}

}  // namespace drawbridge::server
