#pragma once

namespace drawbridge::runtime {

// On SIGSEGV, SIGBUS, SIGFPE, SIGILL or SIGABRT, writes one last line to stderr, e.g.
//   drawbridge: fatal signal SIGSEGV (pid 123); the process ends now; messages already
//   acknowledged are replayed at the next start
// then lets the signal take its usual course (core dump, exit by signal) with the handler that
// was there before (the default one, or a sanitizer's).
//
// The handler is async-signal-safe: the lines are formatted here, at install, and the handler
// only write(2)s one and calls sigaction/raise. It runs on an alternate stack, so a stack
// overflow on the calling thread (the event loop's) still gets its line. Call it once, on the
// thread that runs the event loop, before other threads start.
void install_fatal_signal_handlers();

}  // namespace drawbridge::runtime
