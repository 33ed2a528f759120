//! One thread count per run: `--threads` (default: every core the process may use), clamped to
//! what the machine runs, and one rayon pool of that size for everything the run computes in
//! parallel (matrix products and attention; the optimizer splits its step into as many parts).

/// The cores this process may use (1 when the system cannot say).
pub fn available() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The thread count of a run: `requested` (default: [`available`]), clamped to [`available`]
/// with a note on stderr. 0 is an error, as is any count when no thread can be had.
pub fn resolve(requested: Option<usize>) -> Result<usize, String> {
    let cores = available();
    match requested {
        None => Ok(cores),
        Some(0) => Err("--threads must be at least 1".into()),
        Some(n) if n > cores => {
            eprintln!("--threads {n}: this machine runs {cores} at once; using {cores} (clamped)");
            Ok(cores)
        }
        Some(n) => Ok(n),
    }
}

/// Runs `f` on a pool of `threads` threads: the mini-BERT's rayon work stays within it instead of
/// the global pool of every core.
pub fn with_pool<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> Result<R, String> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .thread_name(|i| format!("recadam-{i}"))
        .build()
        .map_err(|e| format!("cannot start {threads} threads: {e}"))?;
    Ok(pool.install(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_clamped_and_zero_refused() {
        assert_eq!(resolve(None), Ok(available()));
        assert_eq!(resolve(Some(1)), Ok(1));
        assert_eq!(resolve(Some(usize::MAX)), Ok(available()));
        assert!(resolve(Some(0)).unwrap_err().contains("--threads"));
    }

    #[test]
    fn the_pool_has_the_requested_size() {
        assert_eq!(with_pool(2, rayon::current_num_threads), Ok(2));
        assert_eq!(with_pool(1, rayon::current_num_threads), Ok(1));
    }
}
