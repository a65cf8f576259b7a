//! Work split over a few scoped threads, results kept in order: opening streams and shards
//! (which mostly waits for the disk) and converting a delivery buffer (which is CPU work the
//! caller would otherwise do on one core).

/// Runs `f` on every item on up to `threads` threads named `name`, each taking one contiguous
/// part of `items`, and returns the results in item order. Where a thread cannot be started,
/// its part is done on the calling thread; a panic in `f` is resumed here.
pub fn in_parallel<I: Sync, T: Send>(items: &[I], threads: usize, name: &str, f: impl Fn(&I) -> T + Sync) -> Vec<T> {
    let threads = threads.min(items.len());
    if threads <= 1 {
        return items.iter().map(&f).collect();
    }
    let chunk = items.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let f = &f;
        let workers: Vec<_> = items
            .chunks(chunk)
            .map(|part| {
                std::thread::Builder::new()
                    .name(name.into())
                    .spawn_scoped(scope, move || part.iter().map(f).collect::<Vec<T>>())
            })
            .collect();
        workers
            .into_iter()
            .zip(items.chunks(chunk))
            .flat_map(|(worker, part)| match worker {
                Ok(handle) => handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                Err(_) => part.iter().map(f).collect(),
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::in_parallel;

    #[test]
    fn results_come_back_in_item_order() {
        let items: Vec<u32> = (0..1000).collect();
        for threads in [0, 1, 2, 7, 2000] {
            let out = in_parallel(&items, threads, "test", |&i| (i, std::thread::current().name().map(str::to_owned)));
            assert_eq!(out.iter().map(|(i, _)| *i).collect::<Vec<_>>(), items);
            let named = out.iter().filter(|(_, n)| n.as_deref() == Some("test")).count();
            assert_eq!(named > 0, threads > 1, "threads {threads}");
        }
    }
}
