//! WebAssembly transforms in place of Lambda: the WIT contract and the wasmtime host.
//!
//! Nothing is built here yet; see the WASM transforms issue and `DESIGN.md`.
