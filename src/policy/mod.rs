//! The core: a compiled, immutable [`Policy`] and its evaluation of a [`Request`].
//! Nothing here knows about proxy-wasm; the host comes in through [`Host`].
//!
//! This file is the facade: the modules, the public names, and the [`Policy`] struct. The
//! rule model is in `rule`, the decision's vocabulary in `verdict`, the pipeline that runs
//! the stages in `pipeline`, and each stage in its own module.

pub mod auth;
pub mod body;
pub mod client_ip;
pub mod harden;
pub mod host;
pub mod http;
pub mod limit;
pub mod path;
mod pipeline;
mod request;
mod rule;
pub mod screen;
pub mod testing;
mod verdict;

pub use auth::{AuthMethod, Credential, Principal};
pub use client_ip::ClientIpSource;
pub use harden::{
    Hardening, HeaderAction, HeaderEdit, HttpsPolicy, Profile, DRY_RUN_HEADER, OWNED_HEADER_PREFIX,
};
pub use host::{HashAlg, Host, NativeVerify, SharedWrite};
pub use request::{Request, SourceAddress};
pub use rule::{
    DefaultAction, LogDecisions, Matcher, Mode, OtherMethods, PathMatch, Rule, Selection,
};
pub use verdict::{Decision, Denial, GlobalCall, GlobalOutcome, Reason, Verdict};

/// The compiled configuration. Built once per `on_configure`, never changed afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub mode: Mode,
    pub client_ip: ClientIpSource,
    pub log: LogDecisions,
    pub rules: Vec<Rule>,
    pub hardening: Hardening,
    /// Request headers api-guard sets towards the upstream (besides its own prefix): incoming
    /// copies are removed so a client cannot forge them.
    pub owned_request_headers: Vec<String>,
    pub jwt_providers: Vec<auth::jwt::Provider>,
    pub api_keys: Option<auth::api_key::ApiKeys>,
    pub rate_limits: Vec<limit::RateLimitPolicy>,
    pub rate_limit_table: limit::table::SlotTable,
    /// The global `ip` lists, applied to every request.
    pub ip: screen::IpRules,
    /// `default`: what a request that no rule matches gets.
    pub default_action: DefaultAction,
    /// What the configuration probably does not mean (rules shadowed for some methods),
    /// logged as warnings when it is loaded.
    pub warnings: Vec<String>,
    /// `threat_scan_max_bytes`: the screening budget of one request (headers and body).
    pub threat_scan_max_bytes: u64,
}
