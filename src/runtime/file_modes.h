#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace drawbridge::runtime {

// The gateway's files are private whatever the umask it was started with: files 0600, folders
// 0700 (the transcripts in drawbridge.db, the generated token, diagnostic bundles, ...).
inline constexpr mode_t kPrivateFile = 0600;
inline constexpr mode_t kPrivateDir = 0700;

// Sets the process umask to 077 and returns the one it replaced, which the commands the
// gateway runs get back (agents::set_child_umask, SuccessorOptions::umask).
mode_t restrict_umask();
// The umask restrict_umask() replaced the first time; -1 before it was called.
int started_umask();

// Creates `dir` and its missing parents 0700; nullopt, or why not.
std::optional<std::string> make_private_dir(const std::string& dir);

// Writes a new file `path` 0600 (it must not exist yet); nullopt, or why not.
std::optional<std::string> write_private_file(const std::string& path, std::string_view text);

// Takes group and other permissions away from what the gateway keeps, where an older version
// (or a loose umask) left them: the data folder, drawbridge.db and its -wal and -shm,
// gateway.token, gateway.lock, update.json, diagnostics/ and its bundles, and
// <config_path>.last-good. Only files and folders owned by this user, never through a
// symbolic link. Returns the paths it changed ("data/drawbridge.db 0644 -> 0600").
std::vector<std::string> tighten_private_files(const std::string& data_dir,
                                               const std::string& config_path);

}  // namespace drawbridge::runtime
