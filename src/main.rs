use std::process::ExitCode;

use clap::Parser;

// The proxy allocates small, short-lived buffers on every request; mimalloc handles that
// pattern markedly faster than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use frontdoor::cli::{Cli, describe_error, run};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    frontdoor::logging::init(cli.log_format);
    let verbose = cli.verbose;
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Not eprintln!: a closed stderr must not turn an error into a panic.
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "error: {}", describe_error(&e, verbose));
            ExitCode::FAILURE
        }
    }
}
