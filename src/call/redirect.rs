//! Redirects: followed within the provider's origin only, as curl does without
//! `--location-trusted`.
//!
//! A key travels in headers reqwest does not know are secret (`x-api-key`, or any
//! header a gateway uses), so stripping headers on the way out is a list that can be
//! incomplete. Not following a redirect to another origin (scheme, host or port) at
//! all cannot be: the 3xx comes back as the answer and the attempt fails naming
//! where it pointed.

use reqwest::Url;
use reqwest::redirect::{Attempt, Policy};

/// More hops than this within one origin is a loop.
const MAX_HOPS: usize = 10;

pub fn same_origin_only() -> Policy {
    Policy::custom(|attempt: Attempt| {
        if attempt.previous().len() > MAX_HOPS {
            return attempt.error(format!("more than {MAX_HOPS} redirects"));
        }
        let leaves = attempt
            .previous()
            .first()
            .is_none_or(|first| !same_origin(first, attempt.url()));
        if leaves {
            attempt.stop()
        } else {
            attempt.follow()
        }
    })
}

pub fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// The message for a redirect that was not followed: where it pointed, without its
/// query (which could carry anything).
///
/// Only a redirect to another origin is said to be one: a 3xx with no usable
/// `Location` (a `304 Not Modified`) or to the same origin (a `300`, which is never
/// followed) was reported as "redirects to ..., another origin", which it is not.
pub fn refused(status: u16, location: Option<&str>, from: &Url) -> String {
    let Some(mut to) = location.and_then(|l| from.join(l).ok()) else {
        return format!("HTTP {status} without a usable Location: not an answer");
    };
    let elsewhere = !same_origin(&to, from);
    to.set_query(None);
    to.set_fragment(None);
    let _ = to.set_username("");
    let _ = to.set_password(None);
    if !elsewhere {
        return format!(
            "HTTP {status} points to {to}: not an answer, nor a redirect that is followed"
        );
    }
    format!(
        "HTTP {status} redirects to {to}, another origin than {}: not followed, so the API key is not sent there; set the provider's base_url to where the API now lives",
        from.origin().ascii_serialization()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        let u = |s: &str| Url::parse(s).unwrap();
        assert!(same_origin(
            &u("https://a.com/x"),
            &u("https://a.com:443/y")
        ));
        assert!(!same_origin(&u("https://a.com/x"), &u("http://a.com/x")));
        assert!(!same_origin(&u("http://a.com:80/"), &u("http://a.com:81/")));
        assert!(!same_origin(&u("http://a.com/"), &u("http://b.a.com/")));
    }

    #[test]
    fn the_message_names_the_target_without_its_query() {
        let from = Url::parse("http://127.0.0.1:9/v1/messages").unwrap();
        let m = refused(307, Some("http://u:p@evil:8/x?key=sk-1"), &from);
        assert!(m.contains("http://evil:8/x"), "{m}");
        assert!(!m.contains("sk-1") && !m.contains("u:p"), "{m}");
        assert!(m.contains("http://127.0.0.1:9"), "{m}");
    }

    #[test]
    fn a_3xx_that_is_no_redirect_elsewhere_is_not_called_one() {
        let from = Url::parse("http://127.0.0.1:9/v1/messages").unwrap();
        let m = refused(304, None, &from);
        assert_eq!(m, "HTTP 304 without a usable Location: not an answer");
        let m = refused(300, Some("/v2/messages?k=sk-1"), &from);
        assert!(!m.contains("another origin"), "{m}");
        assert!(
            m.contains("http://127.0.0.1:9/v2/messages") && !m.contains("sk-1"),
            "{m}"
        );
    }
}
