//! Model calls over HTTP: OpenAI-compatible chat completions and Anthropic Messages.

mod answer;
pub mod client;
pub mod conversation;
mod limits;
pub(crate) use limits::exchange_error;
mod print;
pub mod redirect;
pub mod retry_after;
pub mod secret;
pub mod sse;
pub mod wire;
