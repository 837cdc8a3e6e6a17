#pragma once

// `drawbridge agents probe ID`: tests an agent's backend once from here, without a gateway.

#include <string>

namespace CLI {
class App;
}

namespace drawbridge::cli {

// The `agents` command and its subcommand, bound to the CLI11 app; it must stay where it is
// until run().
class AgentsCommands {
 public:
  explicit AgentsCommands(CLI::App& app);
  AgentsCommands(const AgentsCommands&) = delete;
  AgentsCommands& operator=(const AgentsCommands&) = delete;

  bool selected() const;
  // Runs the chosen subcommand with the resolved --config file (empty: none); the exit code.
  int run(const std::string& config_path) const;

 private:
  CLI::App* agents_ = nullptr;
  CLI::App* probe_ = nullptr;
  std::string id_;
  int timeout_s_ = 30;
  bool json_ = false;
};

}  // namespace drawbridge::cli
