#include "store/wal_write_buffer.h"

#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>
#include <new>
#include <string>

namespace drawbridge::store {

namespace {

constexpr std::size_t kFrameHeaderBytes = 24;
// The unix VFS's xWrite masks the length to 17 bits: hand it less than 128 kB at a time.
constexpr std::size_t kWriteChunk = 64u << 10;
// A transaction larger than this (one that spills its cache) is written as it goes.
constexpr std::size_t kMaxGathered = 4u << 20;
constexpr std::size_t kKeptCapacity = 1u << 20;

sqlite3_vfs* g_real = nullptr;
sqlite3_vfs g_vfs;
sqlite3_io_methods g_methods;
std::atomic<std::uint64_t> g_sqlite_writes{0};
std::atomic<std::uint64_t> g_file_writes{0};

struct WalFile {
  sqlite3_file base;   // pMethods = &g_methods
  sqlite3_file* real;  // the default VFS's file, in the same allocation, after this struct
  std::string* gathered;
  sqlite3_int64 offset;       // of (*gathered)[0]
  sqlite3_int64 flush_at;     // the end of a commit frame seen: write out once gathered to it
  std::size_t page_bytes;     // learnt from the first page written after a frame header
  sqlite3_int64 last_header;  // offset of the last frame header written, -1 none
};

WalFile* wal(sqlite3_file* file) {
  return reinterpret_cast<WalFile*>(file);
}

sqlite3_int64 gathered_end(const WalFile* f) {
  return f->offset + static_cast<sqlite3_int64>(f->gathered->size());
}

int flush(WalFile* f) {
  std::string& g = *f->gathered;
  int rc = SQLITE_OK;
  for (std::size_t at = 0; at < g.size() && rc == SQLITE_OK; at += kWriteChunk) {
    const std::size_t n = std::min(kWriteChunk, g.size() - at);
    rc = f->real->pMethods->xWrite(f->real, g.data() + at, static_cast<int>(n),
                                   f->offset + static_cast<sqlite3_int64>(at));
    g_file_writes.fetch_add(1, std::memory_order_relaxed);
  }
  g.clear();
  // A commit's frames are reused in place; a spilled transaction's 4 MB are not kept.
  if (g.capacity() > kKeptCapacity) std::string().swap(g);
  f->flush_at = -1;
  return rc;
}

int x_close(sqlite3_file* file) {
  WalFile* f = wal(file);
  const int flushed = flush(f);
  const int rc = f->real->pMethods->xClose(f->real);
  delete f->gathered;
  f->gathered = nullptr;
  return rc != SQLITE_OK ? rc : flushed;
}

int x_write(sqlite3_file* file, const void* data, int n, sqlite3_int64 offset) {
  WalFile* f = wal(file);
  g_sqlite_writes.fetch_add(1, std::memory_order_relaxed);
  std::string& g = *f->gathered;
  if (!g.empty() && offset != gathered_end(f)) {
    if (const int rc = flush(f); rc != SQLITE_OK) return rc;
  }
  if (g.empty()) f->offset = offset;
  const auto* bytes = static_cast<const unsigned char*>(data);
  const auto size = static_cast<std::size_t>(n);
  if (f->last_header >= 0 &&
      offset == f->last_header + static_cast<sqlite3_int64>(kFrameHeaderBytes) &&
      f->page_bytes == 0 && size >= 512) {
    f->page_bytes = size;  // a whole page follows its header (SQLite splits only padding frames)
  }
  if (size == kFrameHeaderBytes) {
    f->last_header = offset;
    // Bytes 4..7 of a frame header: the database size after a commit, zero for other frames.
    if ((bytes[4] | bytes[5] | bytes[6] | bytes[7]) != 0) {
      // Until the page size is known, the next write (the page) completes the frame.
      f->flush_at = f->page_bytes != 0
                        ? offset + static_cast<sqlite3_int64>(kFrameHeaderBytes + f->page_bytes)
                        : offset + static_cast<sqlite3_int64>(kFrameHeaderBytes) + 1;
    }
  }
  try {
    g.append(reinterpret_cast<const char*>(bytes), size);
  } catch (const std::bad_alloc&) {
    // No memory to gather: write through, after what is gathered, in order.
    if (const int rc = flush(f); rc != SQLITE_OK) return rc;
    g_file_writes.fetch_add(1, std::memory_order_relaxed);
    return f->real->pMethods->xWrite(f->real, data, n, offset);
  }
  if ((f->flush_at >= 0 && gathered_end(f) >= f->flush_at) || g.size() >= kMaxGathered) {
    return flush(f);
  }
  return SQLITE_OK;
}

int x_read(sqlite3_file* file, void* out, int n, sqlite3_int64 offset) {
  WalFile* f = wal(file);
  if (const int rc = flush(f); rc != SQLITE_OK) return rc;
  return f->real->pMethods->xRead(f->real, out, n, offset);
}

int x_truncate(sqlite3_file* file, sqlite3_int64 size) {
  WalFile* f = wal(file);
  if (const int rc = flush(f); rc != SQLITE_OK) return rc;
  return f->real->pMethods->xTruncate(f->real, size);
}

int x_sync(sqlite3_file* file, int flags) {
  WalFile* f = wal(file);
  if (const int rc = flush(f); rc != SQLITE_OK) return rc;
  return f->real->pMethods->xSync(f->real, flags);
}

int x_file_size(sqlite3_file* file, sqlite3_int64* size) {
  WalFile* f = wal(file);
  if (const int rc = flush(f); rc != SQLITE_OK) return rc;
  return f->real->pMethods->xFileSize(f->real, size);
}

int x_file_control(sqlite3_file* file, int op, void* arg) {
  WalFile* f = wal(file);
  if (const int rc = flush(f); rc != SQLITE_OK) return rc;
  return f->real->pMethods->xFileControl(f->real, op, arg);
}

int x_lock(sqlite3_file* file, int level) {
  return wal(file)->real->pMethods->xLock(wal(file)->real, level);
}
int x_unlock(sqlite3_file* file, int level) {
  return wal(file)->real->pMethods->xUnlock(wal(file)->real, level);
}
int x_check_reserved(sqlite3_file* file, int* out) {
  return wal(file)->real->pMethods->xCheckReservedLock(wal(file)->real, out);
}
int x_sector_size(sqlite3_file* file) {
  return wal(file)->real->pMethods->xSectorSize(wal(file)->real);
}
int x_device_characteristics(sqlite3_file* file) {
  return wal(file)->real->pMethods->xDeviceCharacteristics(wal(file)->real);
}

int x_open(sqlite3_vfs*, sqlite3_filename name, sqlite3_file* file, int flags, int* out_flags) {
  if ((flags & SQLITE_OPEN_WAL) == 0) {
    // Not a WAL: the default VFS's own file, in the space SQLite allocated for ours.
    return g_real->xOpen(g_real, name, file, flags, out_flags);
  }
  WalFile* f = wal(file);
  std::memset(static_cast<void*>(f), 0, sizeof(WalFile));
  f->real = reinterpret_cast<sqlite3_file*>(reinterpret_cast<char*>(file) + sizeof(WalFile));
  f->flush_at = -1;
  f->last_header = -1;
  f->gathered = new (std::nothrow) std::string();
  if (f->gathered == nullptr) return SQLITE_NOMEM;  // pMethods stays null: no xClose
  const int rc = g_real->xOpen(g_real, name, f->real, flags, out_flags);
  if (rc != SQLITE_OK) {
    // The real file cleans up after a failed open; SQLite calls our xClose only when
    // pMethods is set.
    delete f->gathered;
    f->gathered = nullptr;
    return rc;
  }
  f->base.pMethods = &g_methods;
  return SQLITE_OK;
}

// The rest of the VFS is the default one's.
int x_delete(sqlite3_vfs*, const char* name, int sync_dir) {
  return g_real->xDelete(g_real, name, sync_dir);
}
int x_access(sqlite3_vfs*, const char* name, int flags, int* out) {
  return g_real->xAccess(g_real, name, flags, out);
}
int x_full_pathname(sqlite3_vfs*, const char* name, int n, char* out) {
  return g_real->xFullPathname(g_real, name, n, out);
}
void* x_dl_open(sqlite3_vfs*, const char* name) {
  return g_real->xDlOpen(g_real, name);
}
void x_dl_error(sqlite3_vfs*, int n, char* out) {
  g_real->xDlError(g_real, n, out);
}
void (*x_dl_sym(sqlite3_vfs*, void* handle, const char* sym))(void) {
  return g_real->xDlSym(g_real, handle, sym);
}
void x_dl_close(sqlite3_vfs*, void* handle) {
  g_real->xDlClose(g_real, handle);
}
int x_randomness(sqlite3_vfs*, int n, char* out) {
  return g_real->xRandomness(g_real, n, out);
}
int x_sleep(sqlite3_vfs*, int us) {
  return g_real->xSleep(g_real, us);
}
int x_current_time(sqlite3_vfs*, double* out) {
  return g_real->xCurrentTime(g_real, out);
}
int x_get_last_error(sqlite3_vfs*, int n, char* out) {
  return g_real->xGetLastError != nullptr ? g_real->xGetLastError(g_real, n, out) : 0;
}
int x_current_time_int64(sqlite3_vfs*, sqlite3_int64* out) {
  return g_real->xCurrentTimeInt64(g_real, out);
}

bool register_vfs() {
  g_real = sqlite3_vfs_find(nullptr);
  if (g_real == nullptr || g_real->iVersion < 2 || g_real->xCurrentTimeInt64 == nullptr) {
    return false;
  }
  g_methods = sqlite3_io_methods{};
  g_methods.iVersion = 1;  // a WAL file is never memory-mapped nor given shared memory
  g_methods.xClose = x_close;
  g_methods.xRead = x_read;
  g_methods.xWrite = x_write;
  g_methods.xTruncate = x_truncate;
  g_methods.xSync = x_sync;
  g_methods.xFileSize = x_file_size;
  g_methods.xLock = x_lock;
  g_methods.xUnlock = x_unlock;
  g_methods.xCheckReservedLock = x_check_reserved;
  g_methods.xFileControl = x_file_control;
  g_methods.xSectorSize = x_sector_size;
  g_methods.xDeviceCharacteristics = x_device_characteristics;
  g_vfs = sqlite3_vfs{};
  g_vfs.iVersion = 2;
  g_vfs.szOsFile = static_cast<int>(sizeof(WalFile)) + g_real->szOsFile;
  g_vfs.mxPathname = g_real->mxPathname;
  g_vfs.zName = "drawbridge-wal-gather";
  g_vfs.xOpen = x_open;
  g_vfs.xDelete = x_delete;
  g_vfs.xAccess = x_access;
  g_vfs.xFullPathname = x_full_pathname;
  g_vfs.xDlOpen = x_dl_open;
  g_vfs.xDlError = x_dl_error;
  g_vfs.xDlSym = x_dl_sym;
  g_vfs.xDlClose = x_dl_close;
  g_vfs.xRandomness = x_randomness;
  g_vfs.xSleep = x_sleep;
  g_vfs.xCurrentTime = x_current_time;
  g_vfs.xGetLastError = x_get_last_error;
  g_vfs.xCurrentTimeInt64 = x_current_time_int64;
  return sqlite3_vfs_register(&g_vfs, 0) == SQLITE_OK;
}

}  // namespace

const char* wal_write_buffer_vfs() {
  static const bool registered = register_vfs();
  return registered ? g_vfs.zName : nullptr;
}

WalWriteCounts wal_write_counts() {
  return WalWriteCounts{g_sqlite_writes.load(std::memory_order_relaxed),
                        g_file_writes.load(std::memory_order_relaxed)};
}

}  // namespace drawbridge::store
