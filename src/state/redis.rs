//! The `redis` backend: breakers and the budget shared by a fleet through Redis or
//! Valkey (`redis://`, or `rediss://` for TLS), each decision one Lua script
//! (`redis_scripts.rs`) in one round trip. The URL comes from the environment
//! variable `state.url_env` names; its password never appears in a message. Every
//! connection and command is bounded by `state.timeout`: a Redis that is down or
//! slow costs a run that long once, then the run goes on without breakers.

use std::time::Duration;

use anyhow::{Result, anyhow};
use futures_util::future::BoxFuture;
use redis::aio::MultiplexedConnection;

use super::breaker::{Admission, Phase};
use super::budget::{BudgetView, allowed};
use super::{Backend, KeyStatus, Status, redis_scripts};
use crate::policy::Guarding;
use crate::policy::values::millis;

pub struct Redis {
    client: redis::Client,
    /// What may be named in messages: the URL without its user and password.
    shown: String,
    secret: Vec<String>,
    conn: Option<MultiplexedConnection>,
    guarding: Guarding,
    timeout: Duration,
}

/// The URL with its user information and its query taken out (the client library
/// also reads `?pass=` and `?user=` of a `unix://` URL), and every form of what was
/// taken (as written and percent-decoded), to scrub from any message the client
/// library writes.
pub fn redact(url: &str) -> (String, Vec<String>) {
    let Ok(mut u) = reqwest::Url::parse(url) else {
        return ("(an unreadable URL)".into(), Vec::new());
    };
    let mut taken: Vec<String> = u.query_pairs().map(|(_, v)| v.into_owned()).collect();
    taken.extend(u.query().map(str::to_owned));
    if let Some(p) = u.password() {
        taken.push(p.to_owned());
        taken.push(
            percent_encoding::percent_decode_str(p)
                .decode_utf8_lossy()
                .into_owned(),
        );
    }
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.set_query(None);
    taken.retain(|s| !s.is_empty());
    // The longest first, so a part of another is never left half-scrubbed.
    taken.sort_by_key(|s| std::cmp::Reverse(s.len()));
    (u.to_string(), taken)
}

impl Redis {
    /// The backend at the URL in `state.url_env`'s variable (not connected yet).
    pub fn from_env(guarding: Guarding) -> Result<Redis> {
        let var = guarding.state.url_env.clone().unwrap_or_default();
        let url = std::env::var(&var)
            .ok()
            .filter(|v| !v.is_empty())
            .ok_or_else(|| anyhow!("`{var}` (state.url_env) is not set"))?;
        let (shown, secret) = redact(&url);
        let client = redis::Client::open(url.as_str())
            .map_err(|e| anyhow!("`{var}` is not a Redis URL: {}", scrub(&e, &secret)))?;
        Ok(Redis {
            client,
            shown,
            secret,
            conn: None,
            timeout: guarding.state.timeout.0,
            guarding,
        })
    }

    /// The connection, opened on first use.
    async fn conn(&mut self) -> Result<MultiplexedConnection> {
        if let Some(c) = &self.conn {
            return Ok(c.clone());
        }
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(self.timeout)
            .set_response_timeout(self.timeout);
        let connect = self
            .client
            .get_multiplexed_async_connection_with_config(&config);
        let conn = match tokio::time::timeout(self.timeout * 2, connect).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(self.failed("cannot connect to", &e)),
            Err(_) => return Err(anyhow!("Redis at {} did not answer in time", self.shown)),
        };
        self.conn = Some(conn.clone());
        Ok(conn)
    }

    fn failed(&self, what: &str, e: &redis::RedisError) -> anyhow::Error {
        anyhow!("{what} Redis at {}: {}", self.shown, scrub(e, &self.secret))
    }

    /// Runs `script` with its keys and arguments, within the timeout.
    async fn invoke<T: redis::FromRedisValue>(
        &mut self,
        script: redis::Script,
        keys: &[String],
        args: &[String],
    ) -> Result<T> {
        let mut conn = self.conn().await?;
        let mut call = script.prepare_invoke();
        for k in keys {
            call.key(k);
        }
        for a in args {
            call.arg(a);
        }
        // EVALSHA, then EVAL the first time a server has not seen the script: both
        // within the limit.
        match tokio::time::timeout(self.timeout * 2, call.invoke_async(&mut conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.failed("a command failed on", &e)),
            Err(_) => Err(anyhow!("Redis at {} answered too slowly", self.shown)),
        }
    }

    fn key(&self, parts: &[&str]) -> String {
        format!("{}{}", self.guarding.state.prefix, parts.join(":"))
    }

    /// How long a breaker's keys live without use.
    fn ttl_ms(&self) -> u64 {
        self.guarding.breaker.as_ref().map_or(60_000, |b| {
            2 * millis(b.within.0).max(millis(b.cooldown.0)) + 60_000
        })
    }

    async fn admit_key(&mut self, key: &str, first: bool) -> Result<Admission> {
        let g = &self.guarding;
        let args = vec![
            g.breaker
                .as_ref()
                .map_or(String::new(), |b| millis(b.cooldown.0).to_string()),
            g.breaker.as_ref().map_or(1, |b| b.probes).to_string(),
            if first { "1" } else { "0" }.to_string(),
            self.budget_window_s().to_string(),
            self.ttl_ms().to_string(),
            key.to_string(),
        ];
        let keys = vec![
            self.key(&["b", key]),
            self.key(&["budget"]),
            self.key(&["keys"]),
        ];
        let (kind, since, next): (u8, u64, u64) =
            self.invoke(redis_scripts::admit(), &keys, &args).await?;
        Ok(match kind {
            1 => Admission::Probe,
            2 => Admission::Open {
                since_ms: since,
                next_probe_ms: next,
            },
            _ => Admission::Go,
        })
    }

    fn budget_window_s(&self) -> u64 {
        self.guarding
            .retry_budget
            .as_ref()
            .map_or(0, |b| b.window.0.as_secs().max(1))
    }

    async fn record_key(&mut self, key: &str, admission: Admission, failed: bool) -> Result<()> {
        let Some(b) = self.guarding.breaker.clone() else {
            return Ok(());
        };
        let (trip_n, ratio, min_n) = match b.trip {
            crate::policy::Trip::Failures { failures: n } => (n, 0.0, 0),
            crate::policy::Trip::Ratio {
                ratio,
                min_attempts,
            } => (0, ratio, min_attempts),
        };
        let args = vec![
            u8::from(admission.is_probe()).to_string(),
            u8::from(failed).to_string(),
            millis(b.within.0).to_string(),
            trip_n.to_string(),
            ratio.to_string(),
            min_n.to_string(),
            b.probes.to_string(),
            self.ttl_ms().to_string(),
            format!("{}-{:016x}", std::process::id(), rand::random::<u64>()),
            key.to_string(),
        ];
        let keys = vec![
            self.key(&["b", key]),
            self.key(&["b", key, "all"]),
            self.key(&["b", key, "failed"]),
            self.key(&["keys"]),
        ];
        let _: i64 = self.invoke(redis_scripts::record(), &keys, &args).await?;
        Ok(())
    }

    async fn withdraw_one(&mut self) -> Result<bool> {
        let Some(b) = self.guarding.retry_budget.clone() else {
            return Ok(true);
        };
        let args = vec![
            b.ratio.to_string(),
            b.min_per_second.to_string(),
            self.budget_window_s().to_string(),
        ];
        let keys = vec![self.key(&["budget"])];
        let taken: i64 = self.invoke(redis_scripts::withdraw(), &keys, &args).await?;
        Ok(taken == 1)
    }
}

/// A client library's error, with the password cut out should it quote the URL.
fn scrub(e: &redis::RedisError, secrets: &[String]) -> String {
    secrets
        .iter()
        .fold(e.to_string(), |text, s| text.replace(s.as_str(), "***"))
}

impl Backend for Redis {
    fn admit<'a>(&'a mut self, key: &'a str, first: bool) -> BoxFuture<'a, Result<Admission>> {
        Box::pin(self.admit_key(key, first))
    }

    fn record<'a>(
        &'a mut self,
        key: &'a str,
        admission: Admission,
        failed: bool,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.record_key(key, admission, failed))
    }

    fn withdraw(&mut self) -> BoxFuture<'_, Result<bool>> {
        Box::pin(self.withdraw_one())
    }

    fn status(&mut self) -> BoxFuture<'_, Result<Status>> {
        Box::pin(self.read_status())
    }

    fn reset<'a>(&'a mut self, key: &'a str) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let mut conn = self.conn().await?;
            let keys = [
                self.key(&["b", key]),
                self.key(&["b", key, "all"]),
                self.key(&["b", key, "failed"]),
            ];
            let removed: i64 = redis::pipe()
                .del(&keys)
                .zrem(self.key(&["keys"]), key)
                .ignore()
                .query_async::<(i64,)>(&mut conn)
                .await
                .map(|(n,)| n)
                .map_err(|e| self.failed("a command failed on", &e))?;
            Ok(removed > 0)
        })
    }
}

impl Redis {
    /// Every key in the index, and the budget: a status command, not a run's
    /// decision, so several round trips are fine.
    async fn read_status(&mut self) -> Result<Status> {
        let mut conn = self.conn().await?;
        let err = |e: redis::RedisError| self.failed("a command failed on", &e);
        let names: Vec<String> = redis::cmd("ZRANGE")
            .arg(self.key(&["keys"]))
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await
            .map_err(err)?;
        let (now, f, r): (u64, u64, u64) = self
            .invoke(
                redis_scripts::budget(),
                &[self.key(&["budget"])],
                &[self.budget_window_s().max(1).to_string()],
            )
            .await?;
        let mut breakers = Vec::new();
        for name in names {
            if let Some(k) = self.key_status(&mut conn, &name, now).await? {
                breakers.push(k);
            }
        }
        breakers.sort_by(|a, b| a.key.cmp(&b.key));
        let budget = self.guarding.retry_budget.as_ref().map(|cfg| BudgetView {
            first_attempts: f,
            retries: r,
            allowed: allowed(cfg, f),
        });
        Ok(Status {
            backend: "redis",
            now_ms: now,
            breakers,
            budget,
        })
    }

    async fn key_status(
        &self,
        conn: &mut MultiplexedConnection,
        name: &str,
        now: u64,
    ) -> Result<Option<KeyStatus>> {
        let within = self
            .guarding
            .breaker
            .as_ref()
            .map_or(0, |b| millis(b.within.0));
        let cooldown = self
            .guarding
            .breaker
            .as_ref()
            .map_or(0, |b| millis(b.cooldown.0));
        let from = format!("({}", now.saturating_sub(within));
        type Row = (
            Option<String>,
            Option<u64>,
            Option<u64>,
            Option<u64>,
            u64,
            u64,
        );
        let (phase, since, pdl, opened, attempts, failures): Row = redis::pipe()
            .hget(self.key(&["b", name]), "phase")
            .hget(self.key(&["b", name]), "since")
            .hget(self.key(&["b", name]), "pdl")
            .hget(self.key(&["b", name]), "opened")
            .zcount(self.key(&["b", name, "all"]), &from, "+inf")
            .zcount(self.key(&["b", name, "failed"]), &from, "+inf")
            .query_async(conn)
            .await
            .map_err(|e| self.failed("a command failed on", &e))?;
        let Some(phase) = phase else {
            return Ok(None);
        };
        let phase = Phase::parse(&phase);
        let open = phase != Phase::Closed;
        let since = since.unwrap_or(0);
        let next = match phase {
            Phase::HalfOpen => pdl.unwrap_or(0),
            _ => since + cooldown,
        };
        Ok(Some(KeyStatus {
            key: name.to_string(),
            state: phase,
            since_ms: open.then_some(since),
            next_probe_ms: open.then_some(next),
            failures,
            attempts,
            opened: opened.unwrap_or(0),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn a_password_in_the_user_info_or_the_query_is_never_shown() {
        let (shown, secrets) = redact("redis://:p%40ss-word@127.0.0.1:6379/");
        assert_eq!(shown, "redis://127.0.0.1:6379/");
        assert!(secrets.contains(&"p%40ss-word".to_string()));
        assert!(secrets.contains(&"p@ss-word".to_string()));
        let (shown, secrets) = redact("redis+unix:///run/redis.sock?pass=s3cret&user=me");
        assert!(
            !shown.contains("s3cret") && !shown.contains("me"),
            "{shown}"
        );
        assert!(secrets.contains(&"s3cret".to_string()), "{secrets:?}");
    }
}
