#pragma once

#include <cstdint>

namespace drawbridge::store {

// A SQLite VFS that writes a commit's WAL frames to the file in a few large writes instead of
// two writes a page.
//
// SQLite appends a commit to the -wal file as a 24-byte frame header and then the page, each
// its own pwrite(2): a commit of the message path touches ~130 pages (an index leaf per
// session, see docs/BENCHMARKS.md), so ~260 system calls, which were ~37 % of the store
// thread's time. This VFS wraps the default one and gathers the contiguous writes to a -wal
// file in memory; it hands them to the real file (in pieces of at most 64 kB, what the unix
// VFS takes at once) as soon as the commit frame is complete, which is before SQLite publishes
// the commit in the wal-index, so no connection can look for a frame that is not in the file.
// Whatever else happens to the file (a read, sync, truncate, size query, file control, close,
// a write that is not contiguous) first writes out what is gathered, so SQLite never sees the
// file differ from what it wrote; a write error surfaces from the call that wrote, as before.
// A crash while the pieces are written leaves a commit frame that is missing or fails its
// checksum: the commit did not happen, exactly as when SQLite's own writes are cut short.
// Every file other than a WAL is the default VFS's own, untouched.

// The VFS's name for sqlite3_open_v2 (registered on the first call, not as the default);
// nullptr when the default VFS cannot be wrapped, and then SQLite's default is used.
const char* wal_write_buffer_vfs();

// Since the process started, over every WAL file opened through the VFS: the writes SQLite
// made and the writes handed to the real file.
struct WalWriteCounts {
  std::uint64_t sqlite_writes = 0;
  std::uint64_t file_writes = 0;
};
WalWriteCounts wal_write_counts();

}  // namespace drawbridge::store
