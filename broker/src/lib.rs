//! Wasmq
