//! API keys stored as SHA-256 digests (issue: API keys). Not built yet: `api_keys` is refused.

use super::Credential;
use crate::policy::{Host, Request};

/// The compiled `api_keys` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeys {}

impl ApiKeys {
    pub fn authenticate(&self, _request: &Request, _host: &dyn Host) -> Credential {
        Credential::Absent
    }
}
