//! The Consul baseline: `reqwest` against Consul's KV HTTP API, one pooled client.
//!
//! | op | raw (this file) | kv-consul |
//! |---|---|---|
//! | put | `PUT /v1/kv/key` | `PUT /v1/txn` (delete + set: returns the new index, drops a TTL session) |
//! | get | `GET /v1/kv/key?raw` | `GET /v1/kv/key` (JSON: value, index, flags) |
//! | exists | `GET /v1/kv/key?keys` | `GET /v1/kv/key` |
//! | list | `GET /v1/kv/dir/?recurse` | `GET /v1/kv/root/dir?recurse` |
//! | delete | `DELETE /v1/kv/key` | `PUT /v1/txn` (get + delete: whether it existed) |
//! | cas | `PUT /v1/txn` verb `cas` (returns the new index) | `PUT /v1/txn` check-index + delete + set |

use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use kv::StoreUrl;
use reqwest::StatusCode;

use super::{OpResult, Target};
use crate::output::{Failure, code};

/// A pooled HTTP client for one agent.
pub struct RawConsul {
    http: reqwest::Client,
    base: String,
}

impl RawConsul {
    /// A client for the URL's agent (plain HTTP).
    pub fn connect(url: &StoreUrl) -> Result<RawConsul, Failure> {
        let host = url
            .hosts
            .first()
            .map_or("127.0.0.1:8500".into(), |h| h.address(8500));
        let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| Failure::new(code::OTHER, e.to_string()))?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| Failure::new(code::OTHER, e.to_string()))?;
        Ok(RawConsul {
            http,
            base: format!("http://{host}/v1"),
        })
    }
}

fn err(e: reqwest::Error) -> String {
    e.to_string()
}

#[async_trait]
impl Target for RawConsul {
    async fn put(&self, key: &str, value: &[u8]) -> OpResult<u64> {
        let url = format!("{}/kv/{key}", self.base);
        let response = self
            .http
            .put(url)
            .body(value.to_vec())
            .send()
            .await
            .map_err(err)?;
        response.error_for_status().map_err(err)?;
        Ok(0)
    }

    async fn get(&self, key: &str) -> OpResult<bool> {
        let url = format!("{}/kv/{key}?raw", self.base);
        let response = self.http.get(url).send().await.map_err(err)?;
        let found = response.status() == StatusCode::OK;
        response.bytes().await.map_err(err)?;
        Ok(found)
    }

    async fn exists(&self, key: &str) -> OpResult<bool> {
        let url = format!("{}/kv/{key}?keys", self.base);
        let response = self.http.get(url).send().await.map_err(err)?;
        let found = response.status() == StatusCode::OK;
        response.bytes().await.map_err(err)?;
        Ok(found)
    }

    async fn list(&self, dir: &str) -> OpResult<usize> {
        let url = format!("{}/kv/{dir}/?recurse", self.base);
        let response = self.http.get(url).send().await.map_err(err)?;
        let body = response.bytes().await.map_err(err)?;
        let entries: Vec<serde_json::Value> =
            serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        Ok(entries.len())
    }

    async fn delete(&self, key: &str) -> OpResult<()> {
        let url = format!("{}/kv/{key}", self.base);
        let response = self.http.delete(url).send().await.map_err(err)?;
        response.error_for_status().map(drop).map_err(err)
    }

    async fn cas(&self, key: &str, _previous: &[u8], value: &[u8], token: u64) -> OpResult<u64> {
        let body = serde_json::json!([{ "KV": {
            "Verb": "cas",
            "Key": key,
            "Value": base64::engine::general_purpose::STANDARD.encode(value),
            "Index": token,
        }}]);
        let url = format!("{}/txn", self.base);
        let response = self
            .http
            .put(url)
            .body(body.to_string())
            .send()
            .await
            .map_err(err)?;
        if response.status() == StatusCode::CONFLICT {
            return Err(format!("{key} changed"));
        }
        index_of(
            &response
                .error_for_status()
                .map_err(err)?
                .bytes()
                .await
                .map_err(err)?,
            "Results",
        )
    }

    async fn token(&self, key: &str) -> OpResult<u64> {
        let url = format!("{}/kv/{key}", self.base);
        let response = self.http.get(url).send().await.map_err(err)?;
        index_of(&response.bytes().await.map_err(err)?, "")
    }

    async fn cleanup(&self, prefix: &str) -> OpResult<()> {
        let url = format!("{}/kv/{prefix}/?recurse", self.base);
        let response = self.http.delete(url).send().await.map_err(err)?;
        response.error_for_status().map(drop).map_err(err)
    }
}

/// The `ModifyIndex` of the first entry of a KV answer (or of its `Results`).
fn index_of(body: &[u8], results: &str) -> OpResult<u64> {
    let answer: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let entry = if results.is_empty() {
        &answer[0]
    } else {
        &answer[results][0]["KV"]
    };
    entry["ModifyIndex"]
        .as_u64()
        .ok_or_else(|| "no index in Consul's answer".into())
}
