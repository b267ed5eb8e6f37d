//! The `tale` binary: parses arguments and hands over to [`tale::run`].

use std::process::ExitCode;

fn main() -> ExitCode {
    let status = tale::run(std::env::args_os(), &mut std::io::stdout(), &mut std::io::stderr());
    ExitCode::from(status as u8)
}
