//! What a server says about when to come back: `retry-after-ms`, then `retry-after` as
//! (fractional) seconds, then as an HTTP-date. Zero, negative, unparseable or absurd
//! values are ignored, and the normal backoff applies.

use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;

/// Longer than this is not a wait, it is a mistake (or a day-long ban): ignore it.
const ABSURD: Duration = Duration::from_secs(24 * 60 * 60);

/// The wait asked for and the header that asked, if any header asked sensibly.
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<(Duration, &'static str)> {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(ms) = get("retry-after-ms").and_then(|v| v.parse::<f64>().ok())
        && let Some(d) = sane(ms / 1000.0)
    {
        return Some((d, "retry-after-ms header"));
    }
    let value = get("retry-after")?;
    if let Ok(secs) = value.parse::<f64>() {
        return sane(secs).map(|d| (d, "retry-after header (seconds)"));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    let wait = when.duration_since(now).ok()?;
    sane(wait.as_secs_f64()).map(|d| (d, "retry-after header (HTTP-date)"))
}

fn sane(secs: f64) -> Option<Duration> {
    // Compared before converting: `Duration::from_secs_f64` panics past u64 seconds.
    (secs.is_finite() && secs > 0.0 && secs <= ABSURD.as_secs_f64())
        .then(|| Duration::from_secs_f64(secs))
}

/// `x-should-retry: true|false`, the server's override of the status rule.
pub fn should_retry(headers: &HeaderMap) -> Option<bool> {
    match headers.get("x-should-retry")?.to_str().ok()?.trim() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn every_form_and_its_rule() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let later = httpdate::fmt_http_date(now + Duration::from_secs(7));
        type Case<'a> = (Vec<(&'static str, &'a str)>, Option<(u64, &'a str)>);
        let cases: Vec<Case> = vec![
            (
                vec![("retry-after-ms", "1500")],
                Some((1500, "retry-after-ms header")),
            ),
            (
                vec![("retry-after-ms", "250"), ("retry-after", "9")],
                Some((250, "retry-after-ms header")),
            ),
            (
                vec![("retry-after", "2")],
                Some((2000, "retry-after header (seconds)")),
            ),
            (
                vec![("retry-after", "0.5")],
                Some((500, "retry-after header (seconds)")),
            ),
            (
                vec![("retry-after", later.as_str())],
                Some((7000, "retry-after header (HTTP-date)")),
            ),
            (vec![("retry-after", "0")], None),
            (vec![("retry-after", "-3")], None),
            (vec![("retry-after", "soon")], None),
            (vec![("retry-after", "99999999")], None),
            (vec![("retry-after", "1e20")], None),
            (vec![("retry-after", "1e300")], None),
            (vec![("retry-after-ms", "1e30")], None),
            (
                vec![("retry-after-ms", "nan"), ("retry-after", "1")],
                Some((1000, "retry-after header (seconds)")),
            ),
            (vec![("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")], None),
            (vec![], None),
        ];
        for (h, want) in cases {
            let got = retry_after(&headers(&h), now).map(|(d, r)| (d.as_millis() as u64, r));
            assert_eq!(got, want, "{h:?}");
        }
    }

    #[test]
    fn should_retry_both_ways() {
        assert_eq!(
            should_retry(&headers(&[("x-should-retry", "true")])),
            Some(true)
        );
        assert_eq!(
            should_retry(&headers(&[("x-should-retry", "false")])),
            Some(false)
        );
        assert_eq!(should_retry(&headers(&[("x-should-retry", "maybe")])), None);
    }
}
