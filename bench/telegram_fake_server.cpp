// The tests' fake Bot API (tests/fakes/telegram_fake.h) as a process of its own, for benchmarks
// that run gateways as processes (bench/cluster.sh's rolling restarts): one bot, a steady
// stream of text updates over a few chats, and at the end what the gateways made of it.
//
//   drawbridge_telegram_fake --token T --url-file F [--rate N] [--chats N] [--settle S]
//
// Writes the fake's base URL to F once it serves, then pushes N updates a second ("u<i>", from
// chat ids 1001.., each chat its own user) until SIGTERM or SIGINT. Then it stops pushing,
// waits up to S seconds until every update is answered, and prints one JSON line: pushed,
// answered, lost (never answered), duplicates (answered more than once) and the most
// getUpdates of the bot ever in flight at one instant (one poller at a time: 1).

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <csignal>
#include <fstream>
#include <iostream>
#include <map>
#include <string>
#include <thread>

#include "fakes/telegram_fake.h"

namespace {

std::atomic<bool> stop_requested{false};
void on_signal(int) { stop_requested = true; }

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"A fake Telegram Bot API with a steady stream of updates (benchmarks)"};
  std::string token, url_file;
  int rate = 20, chats = 10, settle_s = 30;
  app.add_option("--token", token, "the bot's token")->required();
  app.add_option("--url-file", url_file, "where to write the base URL")->required();
  app.add_option("--rate", rate, "updates per second")->check(CLI::Range(1, 10000));
  app.add_option("--chats", chats, "chats (ids 1001..)")->check(CLI::Range(1, 1000));
  app.add_option("--settle", settle_s, "seconds to wait for the last answers")
      ->check(CLI::Range(0, 600));
  CLI11_PARSE(app, argc, argv);

  std::signal(SIGTERM, on_signal);
  std::signal(SIGINT, on_signal);
  drawbridge::testing::TelegramFake fake(drawbridge::testing::TelegramFake::Options{});
  fake.add_bot(token, 777001, "bench_bot");
  {
    std::ofstream out(url_file + ".tmp");
    out << fake.base_url() << "\n";
  }
  std::rename((url_file + ".tmp").c_str(), url_file.c_str());

  using clock = std::chrono::steady_clock;
  const auto every = std::chrono::microseconds(1'000'000 / rate);
  auto next = clock::now();
  std::int64_t pushed = 0;
  while (!stop_requested) {
    const std::int64_t chat = 1001 + pushed % chats;
    fake.push_message(token, chat, chat, "u" + std::to_string(pushed));
    ++pushed;
    next += every;
    std::this_thread::sleep_until(next);  // a paced stream: a benchmark tool, not a test
  }
  auto answered_all = [&] {
    std::map<std::string, int> seen;
    for (const auto& m : fake.sent(token)) ++seen[m.text];
    for (std::int64_t i = 0; i < pushed; ++i) {
      if (!seen.count("u" + std::to_string(i))) return false;
    }
    return true;
  };
  fake.wait_for(answered_all, std::chrono::seconds(settle_s));
  std::map<std::string, int> seen;
  for (const auto& m : fake.sent(token)) ++seen[m.text];
  std::int64_t answered = 0, lost = 0, duplicates = 0;
  for (std::int64_t i = 0; i < pushed; ++i) {
    auto it = seen.find("u" + std::to_string(i));
    if (it == seen.end()) {
      ++lost;
      continue;
    }
    ++answered;
    duplicates += it->second - 1;
  }
  std::cout << nlohmann::json{{"pushed", pushed},
                              {"answered", answered},
                              {"lost", lost},
                              {"duplicates", duplicates},
                              {"maxConcurrentPolls", fake.max_concurrent_polls(token)}}
                   .dump()
            << std::endl;
  return 0;
}
