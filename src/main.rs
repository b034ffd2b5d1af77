use std::process::ExitCode;

use clap::Parser;

// The proxy allocates small, short-lived buffers on every request; mimalloc handles that
// pattern markedly faster than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use frontdoor::cli::{Cli, describe_error, run};

fn main() -> ExitCode {
    no_huge_pages();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return fail(&format!("cannot start the async runtime: {e}")),
    };
    runtime.block_on(async {
        let cli = Cli::parse();
        frontdoor::logging::init(cli.log_format());
        let verbose = cli.verbose;
        match run(cli).await {
            Ok(()) => ExitCode::SUCCESS,
            // A DENY from `explain`: the verdict is printed; the exit status says it.
            Err(e) if e.is::<frontdoor::cli::Denied>() => ExitCode::FAILURE,
            Err(e) => fail(&describe_error(&e, verbose)),
        }
    })
}

fn fail(message: &str) -> ExitCode {
    // Not eprintln!: a closed stderr must not turn an error into a panic.
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "error: {message}");
    ExitCode::FAILURE
}

/// Turns transparent huge pages off for this process, before any thread touches memory.
/// mimalloc asks the kernel for them (`MADV_HUGEPAGE`), so every 2 MiB region it touched
/// counted whole in the resident set: the front door held 41 MiB under a warm load and
/// 49–53 MiB after 20,000 distinct tokens, against 25 and 30–33 MiB without, at the same
/// speed (bench/README.md). The setting is inherited by the `command` services frontdoor
/// starts (the kernel keeps it across `execve`): a test service loses nothing by it, and
/// undoing it in the child would take `unsafe` code. A kernel without the setting keeps
/// its huge pages, which is only memory.
fn no_huge_pages() {
    let _ = nix::sys::prctl::set_thp_disable(true);
}
