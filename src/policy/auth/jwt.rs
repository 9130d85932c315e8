//! JWT verification (issue: JWT providers). Not built yet: `jwt_providers` is refused by config.

use super::Credential;
use crate::policy::{Host, Request};

/// A compiled `jwt_providers.<name>` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provider {
    pub name: String,
}

impl Provider {
    pub fn authenticate(&self, _request: &Request, _host: &dyn Host) -> Credential {
        Credential::Absent
    }
}
