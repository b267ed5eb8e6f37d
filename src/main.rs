//! The `tale` binary: parses arguments and hands over to [`tale::run`].

use std::process::ExitCode;

/// Events are allocated on the async threads and freed on the database
/// writer's: glibc's allocator serializes that on an arena lock.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let status = tale::run(std::env::args_os(), &mut std::io::stdout(), &mut std::io::stderr());
    ExitCode::from(status as u8)
}
