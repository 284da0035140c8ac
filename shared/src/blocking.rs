//! Calls that block the thread (a disk flush) made from async code.

use tokio::runtime::{Handle, RuntimeFlavor};

/// Runs `f`, which blocks, in place. sled 0.34's `flush_async` can leave
/// futures unwoken when several poll it at once (sled issues 1241 and
/// 1308), so broker and agent flush with the blocking call. On a
/// multi-threaded runtime the worker first hands its other tasks on (no
/// thread hop, which costs more than a flush on a small machine); on a
/// current-thread runtime (tests, the CLI) the call is simply waited out.
pub fn in_place<T>(f: impl FnOnce() -> T) -> T {
    if Handle::try_current().is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread) {
        tokio::task::block_in_place(f)
    } else {
        f()
    }
}
