//! Model calls over HTTP: OpenAI-compatible chat completions and Anthropic Messages.

pub mod client;
pub mod retry_after;
pub mod sse;
pub mod wire;
