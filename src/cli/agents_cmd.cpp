#include "cli/agents_cmd.h"

#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <cstdlib>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>

#include "agents/openai/openai_probe.h"
#include "runtime/asio_executor.h"
#include "runtime/gateway.h"
#include "runtime/offline_config.h"
#include "runtime/openai_config.h"

namespace drawbridge::cli {

namespace {

using nlohmann::json;
using runtime::exit_code::config_invalid;
using runtime::exit_code::crashed;
using runtime::exit_code::ok;
using runtime::exit_code::usage;

std::optional<std::string> env(const std::string& name) {
  const char* v = std::getenv(name.c_str());
  return v ? std::optional<std::string>(v) : std::nullopt;
}

}  // namespace

AgentsCommands::AgentsCommands(CLI::App& app) {
  agents_ = app.add_subcommand("agents", "The agent backends: test one once (probe ID)");
  agents_->require_subcommand(1);
  agents_->fallthrough();
  probe_ = agents_->add_subcommand(
      "probe",
      "Test one agent's backend once, without a running gateway, from the --config file (the API "
      "key from the environment as the gateway reads it): openai lists the endpoint's models "
      "(GET /models: reached? key accepted? model listed?) and asks one tiny completion as a turn "
      "would; echo and exec need no test. Exit 0 when it works, 1 when it does not (the message "
      "says what is wrong), 64 for an agent that is not configured, 78 for an invalid config");
  probe_->add_option("id", id_, "The agent id (agents.<id>)")->required();
  probe_->add_option("--timeout", timeout_s_, "Seconds the test may take")
      ->capture_default_str()
      ->check(CLI::Range(1, 3600));
  probe_->add_flag("--json", json_, "Print the outcome as JSON");
  probe_->fallthrough();
}

bool AgentsCommands::selected() const {
  return agents_ != nullptr && agents_->parsed();
}

int AgentsCommands::run(const std::string& config_path) const {
  const auto loaded = runtime::load_offline_config(config_path);
  if (!loaded.io_error.empty()) {
    std::cerr << "drawbridge: " << loaded.io_error << "\n";
    return config_invalid;
  }
  const std::string source = config_path.empty() ? "the built-in defaults" : config_path;
  if (!loaded.effective) {
    std::cerr << source << ": " << loaded.errors.size() << " problem(s)\n";
    for (const auto& e : loaded.errors) std::cerr << "  " << e << "\n";
    return config_invalid;
  }
  const auto it = loaded.agents.find(id_);
  if (it == loaded.agents.end()) {
    std::string known;
    for (const auto& [id, a] : loaded.agents) known += (known.empty() ? "" : ", ") + id;
    std::cerr << "drawbridge: no agent \"" << id_ << "\" in " << source
              << " (configured: " << (known.empty() ? "none" : known) << ")\n";
    return usage;
  }
  const auto& a = it->second;
  json out = {{"agent", id_}, {"type", a.type}};
  bool good = true;
  std::string message;
  if (a.type != "openai") {
    message = "ok, " + a.type + " runs inside the gateway: nothing to reach";
  } else {
    std::string error;
    std::vector<std::string> warnings;
    auto settings = runtime::openai_settings(a, error, warnings, env);
    for (const auto& w : warnings) std::cerr << "warning: " << w << "\n";
    if (!settings) {
      good = false;
      message = error;
    } else {
      boost::asio::io_context io;
      runtime::AsioExecutor executor(io);
      std::optional<agents::openai::ProbeResult> result;
      const auto timeout = std::chrono::seconds(timeout_s_);
      agents::openai::probe(io, executor, *settings, timeout,
                            [&](agents::openai::ProbeResult r) { result = std::move(r); });
      io.run_for(timeout + std::chrono::seconds(2));
      if (!result) {
        good = false;
        message = "no answer within the timeout";
      } else {
        good = result->ok;
        message = result->message;
        out["endpoint"] = result->endpoint;
        out["model"] = settings->model;
        out["modelListed"] = result->model_listed;
        out["models"] = result->models;
        out["latencyMs"] = result->latency_ms >= 0 ? json(result->latency_ms) : json();
        out["reply"] = result->reply;
      }
    }
  }
  if (json_) {
    out["ok"] = good;
    out["message"] = message;
    std::cout << out.dump(2) << "\n";
  } else {
    (good ? std::cout : std::cerr) << id_ << ": " << message << "\n";
  }
  return good ? ok : crashed;
}

}  // namespace drawbridge::cli
