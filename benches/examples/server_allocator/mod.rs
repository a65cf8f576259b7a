//! The allocator of `sluice serve` (jemalloc with [`sluice::JEMALLOC_CONF`], as in
//! `src/main.rs`), for examples that run the server in their own process: without it they
//! measured glibc's malloc, which took about 18 % of the Firehose end-to-end profile.

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[allow(non_upper_case_globals)]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static malloc_conf: &[u8] = sluice::JEMALLOC_CONF;
