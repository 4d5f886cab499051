//! The start of runh's two programs, `runh` (rust/launcher) and `runh-init` (rust/init),
//! in place of std's runtime start: both are `#![no_main]`, with a C `main` that calls
//! `start` first.
//!
//! Why: std's `lang_start` also sets up the main thread's stack-overflow message. It reads
//! /proc/self/maps (glibc's pthread_getattr_np finds the main stack there), and maps a
//! guard-paged alternate signal stack with its SIGSEGV and SIGBUS handlers, which it
//! unmaps again at exit: 17 syscalls (strace) that neither program wants (runh-init
//! resets every signal at once anyway). Measured here on a static-glibc `fn main` against the same
//! program `#![no_main]`, 400 interleaved runs: 0.72 against 0.64 ms of CPU, 0.91 against
//! 0.82 ms wall. Each of runh's calls runs the launcher, and every create, run and exec
//! runs runh-init too.
//!
//! What std's start does that these programs do need is here: fds 0-2 opened on
//! /dev/null when they are closed, so that no fd the program opens lands on a standard
//! stream (in runh-init that stream would be the container's), and for the launcher
//! SIGPIPE ignored (a caller that closes the pipe it reads `state` from gets runh's
//! EPIPE error, not a runh killed by a signal). `std::env::args` works without std's
//! start (glibc hands argv to std's init_array hook). A `main` that returns would skip
//! std's flush of stdout: both programs end in `std::process::exit` or an exec.

/// std's start, minus the stack-overflow handler: see the module's comment.
pub fn start(ignore_sigpipe: bool) {
    unsafe {
        // One poll asks after all three (POLLNVAL: closed); fcntl one by one if it fails.
        let mut fds = [0, 1, 2].map(|fd| libc::pollfd { fd, events: 0, revents: 0 });
        let polled = libc::poll(fds.as_mut_ptr(), 3, 0) >= 0;
        for p in fds {
            let closed = if polled {
                p.revents & libc::POLLNVAL != 0
            } else {
                libc::fcntl(p.fd, libc::F_GETFD) == -1 && *libc::__errno_location() == libc::EBADF
            };
            // The lowest free fd is this one: the lower ones are open by now.
            if closed && libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) != p.fd {
                libc::abort();
            }
        }
        if ignore_sigpipe {
            libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        }
    }
}
