//! Model calls over HTTP: OpenAI-compatible chat completions and Anthropic Messages.

pub mod client;
pub mod redirect;
pub mod retry_after;
pub mod secret;
pub mod sse;
pub mod wire;
