#include "fakes/pg_server.h"

#include <fcntl.h>
#include <libpq-fe.h>
#include <pwd.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>
#include <stdexcept>
#include <vector>

extern char** environ;

namespace drawbridge::testing {
namespace {

namespace fs = std::filesystem;

constexpr int kPort = 5432;  // the socket is in a folder of its own: no port is shared
constexpr const char* kPasswordGroup = "drawbridge_password_login";

// A conninfo value in single quotes (libpq's rules: backslash escapes ' and \).
std::string quoted(const std::string& s) {
  std::string q = "'";
  for (char c : s) {
    if (c == '\'' || c == '\\') q += '\\';
    q += c;
  }
  return q + "'";
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// The newest installed server's bin folder, "" when none.
fs::path postgres_bin() {
  std::error_code ec;
  fs::path best;
  int best_version = -1;
  for (const auto& e : fs::directory_iterator("/usr/lib/postgresql", ec)) {
    const auto bin = e.path() / "bin";
    int version = std::atoi(e.path().filename().c_str());
    if (version > best_version && fs::exists(bin / "initdb") && fs::exists(bin / "pg_ctl")) {
      best = bin;
      best_version = version;
    }
  }
  return best;
}

// argv run as the postgres user when we are root (initdb and postgres refuse root).
std::vector<std::string> as_postgres(std::vector<std::string> argv) {
  if (geteuid() != 0) return argv;
  std::vector<std::string> out = {"/usr/sbin/runuser", "-u", "postgres", "--"};
  out.insert(out.end(), argv.begin(), argv.end());
  return out;
}

// Runs argv with stdout and stderr appended to `log`; its exit status (-1: not run).
int run(const std::vector<std::string>& argv, const fs::path& log) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) return -1;
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

struct Server {
  std::string socket_dir;
  int port = kPort;
  std::string conninfo() const {
    return "host=" + quoted(socket_dir) + " port=" + std::to_string(port) +
           " dbname=postgres user=postgres";
  }
};

// This process's own server: the watcher (a `sh` waiting on a pipe) stops it and removes its
// folder when the write end closes, at exit or when the process dies.
class PrivateServer {
 public:
  ~PrivateServer() {
    if (pipe_write_ < 0) return;
    close(pipe_write_);
    int status = 0;
    while (waitpid(watcher_, &status, 0) < 0 && errno == EINTR) {
    }
  }

  // Nothing and `why` when it cannot be started.
  std::optional<Server> start(std::string* why) {
    const fs::path bin = postgres_bin();
    std::string pattern = (fs::temp_directory_path() / "drawbridge-pg-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) {
      *why = "mkdtemp failed";
      return std::nullopt;
    }
    const fs::path dir = pattern;
    if (geteuid() == 0) {
      const passwd* pw = getpwnam("postgres");
      if (pw == nullptr || chown(dir.c_str(), pw->pw_uid, pw->pw_gid) != 0) {
        *why = "running as root and there is no postgres user to run the server as";
        fs::remove_all(dir);
        return std::nullopt;
      }
    }
    const fs::path data = dir / "data";
    const fs::path log = dir / "server.log";
    if (!watch(bin, data, dir)) {
      *why = "cannot start the process that cleans up the test server";
      fs::remove_all(dir);
      return std::nullopt;
    }
    if (run(as_postgres({(bin / "initdb").string(), "-D", data.string(), "-U", "postgres", "-A",
                         "trust", "-E", "UTF8", "--locale=C", "-N"}),
            dir / "initdb.log") != 0) {
      *why = "initdb failed: " + read_file(dir / "initdb.log");
      return std::nullopt;
    }
    std::ofstream(data / "pg_hba.conf", std::ios::trunc)
        << "local all +" << kPasswordGroup << " scram-sha-256\n"
        << "local all all trust\n";
    std::ofstream(data / "postgresql.conf", std::ios::app)
        << "listen_addresses = ''\n"
        << "unix_socket_directories = '" << dir.string() << "'\n"
        << "port = " << kPort << "\n"
        << "fsync = off\n";
    if (run(as_postgres({(bin / "pg_ctl").string(), "start", "-D", data.string(), "-w", "-t", "60",
                         "-l", log.string()}),
            dir / "pg_ctl.log") != 0) {
      *why = "pg_ctl start failed: " + read_file(log);
      return std::nullopt;
    }
    Server server{dir.string(), kPort};
    try {
      pg_query(server.conninfo(), std::string("CREATE ROLE ") + kPasswordGroup + " NOLOGIN");
    } catch (const std::runtime_error& e) {
      *why = std::string("the test server does not answer: ") + e.what();
      return std::nullopt;
    }
    return server;
  }

 private:
  // Starts the watcher: `sh` reads its stdin, the pipe's read end, until this process closes
  // the write end (it is close-on-exec, so no child of ours holds it), then stops the server.
  bool watch(const fs::path& bin, const fs::path& data, const fs::path& dir) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) return false;
    std::vector<std::string> argv = {
        "/bin/sh", "-c", "read -r _; \"$@\" >/dev/null 2>&1; rm -rf -- \"$0\"", dir.string()};
    for (auto& a : as_postgres({(bin / "pg_ctl").string(), "stop", "-D", data.string(), "-m",
                                "immediate", "-w", "-t", "30"})) {
      argv.push_back(std::move(a));
    }
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[0], 0);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    // A group of its own: a Ctrl-C or a kill of this test's process group does not stop the
    // watcher before it has cleaned up.
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
    posix_spawnattr_setpgroup(&attr, 0);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    const int rc = posix_spawn(&watcher_, "/bin/sh", &actions, &attr, args.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    close(fds[0]);
    if (rc != 0) {
      close(fds[1]);
      return false;
    }
    pipe_write_ = fds[1];
    return true;
  }

  int pipe_write_ = -1;
  pid_t watcher_ = 0;
};

struct Found {
  std::optional<Server> server;
  std::string why;
  bool installed = true;  // false: `why` is a reason to skip, not a failure
};

Found find_server() {
  Found found;
  if (const char* shared = std::getenv("DRAWBRIDGE_TEST_PG_DIR"); shared && *shared) {
    const fs::path dir = shared;
    if (fs::exists(dir / "unavailable")) {
      found.why = read_file(dir / "unavailable");
      found.installed = false;
      return found;
    }
    if (fs::exists(dir / "port")) {
      found.server = Server{dir.string(), std::atoi(read_file(dir / "port").c_str())};
      return found;
    }
    // No server there (the binary run by hand with the variable set): start one of our own.
  }
  if (postgres_bin().empty()) {
    found.why =
        "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb; "
        "scripts/install-deps.sh --with-tests installs it)";
    found.installed = false;
    return found;
  }
  static PrivateServer own;
  found.server = own.start(&found.why);
  return found;
}

// The server, or nothing and `why` when PostgreSQL is not installed. Throws when it is and
// the server could not be started: that is a failure, not a reason to skip.
const Server* server(std::string* why) {
  static const Found found = find_server();
  if (found.server) return &*found.server;
  if (found.installed) throw std::runtime_error("no PostgreSQL test server: " + found.why);
  *why = found.why;
  return nullptr;
}

std::string fresh_name(const char* prefix) {
  static std::atomic<int> counter{0};
  static const unsigned salt = std::random_device{}();
  std::ostringstream name;
  name << prefix << getpid() << '_' << ++counter << '_' << std::hex << (salt & 0xffffff);
  return name.str();
}

struct ConnCloser {
  void operator()(PGconn* c) const { PQfinish(c); }
};

}  // namespace

std::string pg_query(const std::string& conninfo, const std::string& sql) {
  std::unique_ptr<PGconn, ConnCloser> conn(PQconnectdb(conninfo.c_str()));
  if (PQstatus(conn.get()) != CONNECTION_OK) {
    throw std::runtime_error(std::string("cannot connect: ") + PQerrorMessage(conn.get()));
  }
  PQsetNoticeProcessor(
      conn.get(), [](void*, const char*) {}, nullptr);
  PGresult* res = PQexec(conn.get(), sql.c_str());
  const auto status = PQresultStatus(res);
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
    std::string message = PQresultErrorMessage(res);
    PQclear(res);
    throw std::runtime_error(sql + ": " + message);
  }
  std::string value;
  if (status == PGRES_TUPLES_OK && PQntuples(res) > 0 && PQnfields(res) > 0) {
    value = PQgetvalue(res, 0, 0);
  }
  PQclear(res);
  return value;
}

std::int64_t pg_server_now_ms(const std::string& conninfo) {
  return std::stoll(
      pg_query(conninfo, "SELECT (extract(epoch from clock_timestamp()) * 1000)::bigint"));
}

std::optional<std::string> fresh_pg_schema(std::string* why) {
  const Server* s = server(why);
  if (s == nullptr) return std::nullopt;
  const std::string schema = fresh_name("t_");
  pg_query(s->conninfo(), "CREATE SCHEMA " + schema);
  return s->conninfo() + " options=" + quoted("-c search_path=" + schema);
}

std::optional<PgPasswordRole> pg_password_role(std::string* why) {
  const Server* s = server(why);
  if (s == nullptr) return std::nullopt;
  const std::string role = fresh_name("pw_");
  PgPasswordRole out;
  // Letters, digits and '_' only: no quoting needed in SQL.
  out.password = "Pw" + fresh_name("") + "x9";
  pg_query(s->conninfo(), "CREATE ROLE " + role + " LOGIN PASSWORD '" + out.password +
                              "' IN ROLE " + kPasswordGroup + "; CREATE SCHEMA " + role +
                              " AUTHORIZATION " + role);
  out.conninfo = "host=" + quoted(s->socket_dir) + " port=" + std::to_string(s->port) +
                 " dbname=postgres user=" + role + " options=" + quoted("-c search_path=" + role);
  return out;
}

}  // namespace drawbridge::testing
