//! The native part of the Node package `mullama`: a thin napi-rs layer over `mullama-core`.
//! It converts values and errors and nothing else; the JS facade (`index.js`) turns streams
//! into async iterables and errors into `MullamaError` subclasses.

// napi-rs registers the exported functions only outside cfg(test), so a test build (clippy's
// --all-targets) sees them as unused.
#![cfg_attr(test, allow(dead_code))]

mod config;
mod errors;
mod stream;
mod tokenizer;
