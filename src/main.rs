//! The `rapport` binary: parses the command line and hands over to the library.

/// jemalloc instead of the system allocator: under sled's many small, short-lived allocations
/// glibc's malloc fragmented the heap to several times the working set (see the README's
/// Benchmarks for the measured difference).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    // Before llama.cpp is touched: its AVX2 kernels would die of SIGILL on an older CPU.
    if let Err(message) = rapport::cpu::check() {
        eprintln!("error: {message}");
        return std::process::ExitCode::FAILURE;
    }
    rapport::cli::run()
}
