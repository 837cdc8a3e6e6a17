#pragma once

// One test of an IRC link for `drawbridge channels probe`, without a gateway: connect (TLS when
// configured), register under a probe nick, wait for the welcome (001), QUIT. A probe nick, not
// the configured one, so that a running bot on the same server is not pushed off its nick.

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <functional>
#include <string>

#include "channels/irc/irc_channel.h"

namespace drawbridge::channels::irc {

struct ProbeResult {
  bool ok = false;
  // ok: "welcome from irc.example.org as bot-probe"; else what failed ("cannot connect to
  // h:6667: Connection refused", "the server closed the link: ..."). Never the password.
  std::string message;
  std::string server;  // ok: who sent the 001
  std::string nick;    // ok: the nick the server registered
};

// The first nick the probe asks for: the configured one with "-probe".
std::string probe_nick(const std::string& nick);

// Runs the probe on `io`; `done` runs once, on the io thread, at the latest `timeout` after the
// call. The password (PASS) is sent when configured; SASL is not tried (a server that demands
// it answers with an error numeric, which is reported).
void probe(boost::asio::io_context& io, const IrcOptions& options,
           std::chrono::milliseconds timeout, std::function<void(ProbeResult)> done);

}  // namespace drawbridge::channels::irc
