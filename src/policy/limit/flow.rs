//! The global-limit flow of one request, as the pipeline runs it: the local checks before a
//! call to the rate limit service ([`admit`]), then what its answer, or its silence, decides
//! ([`finish`]).

use super::global::{self, Answer, FailureMode, GlobalLimit};
use super::table::{Placement, SlotTable};
use super::{check, unix_nanos, RateLimitPolicy};
use crate::policy::host::Host;
use crate::policy::verdict::{Denial, GlobalCall, GlobalOutcome};

/// A global policy's local pass for `client` (of the request's `rule`): refuses without a
/// call what the service would refuse anyway (a client the service said was over its limit,
/// until the reset it gave, or one over the whole limit here), else gives the call to make.
pub fn admit(
    index: usize,
    policy: &RateLimitPolicy,
    global: &GlobalLimit,
    table: &SlotTable,
    client: &str,
    rule: Option<&str>,
    host: &dyn Host,
) -> Result<GlobalCall, Denial> {
    let now = unix_nanos(host);
    let hold = hold_placement(table, policy, client);
    let local = match table.held(host, &hold, now) {
        Some(left) => Err(global::over_limit(
            policy,
            &Answer {
                over_limit: true,
                reset_in_ns: Some(left),
                ..Default::default()
            },
        )),
        None => check(policy, table, client, host).map(drop),
    };
    local?;
    Ok(GlobalCall {
        policy: index,
        cluster: global.cluster.clone(),
        timeout: global.timeout,
        message: global::request_message(&global.domain, &policy.name, client, rule),
    })
}

/// What the service's answer (`None`: no usable answer in time) means for `client`: quota
/// headers to add when admitted; a 429 and a hold until the reset when over; the failure
/// mode when silent.
pub fn finish(
    policy: &RateLimitPolicy,
    global: &GlobalLimit,
    table: &SlotTable,
    client: &str,
    answer: Option<Answer>,
    host: &dyn Host,
) -> Settled {
    let (outcome, denial) = match answer {
        Some(answer) if !answer.over_limit => {
            return Settled {
                outcome: GlobalOutcome::Ok,
                denial: None,
                response_headers: global::allowed_headers(policy, &answer),
            };
        }
        Some(answer) => {
            let denial = global::over_limit(policy, &answer);
            let now = unix_nanos(host);
            let until = now.saturating_add(global::reset_ns(policy, &answer));
            let hold = hold_placement(table, policy, client);
            table.hold(host, &hold, until, now);
            (GlobalOutcome::OverLimit, Some(denial))
        }
        None => match global.failure_mode {
            FailureMode::Allow => (GlobalOutcome::FailureAllowed, None),
            FailureMode::Deny => (GlobalOutcome::FailureDenied, Some(global::unavailable())),
        },
    };
    Settled {
        outcome,
        denial,
        response_headers: Vec::new(),
    }
}

/// How a global check ended once the service answered (or did not).
#[derive(Debug)]
pub struct Settled {
    pub outcome: GlobalOutcome,
    /// The refusal, when there is one.
    pub denial: Option<Denial>,
    /// Quota headers for the upstream's response, when admitted.
    pub response_headers: Vec<(String, String)>,
}

/// Where the hold of a global policy's client lives in the slot table (`#` is not
/// allowed in policy names, so a hold never meets a bucket).
fn hold_placement(table: &SlotTable, policy: &RateLimitPolicy, client: &str) -> Placement {
    table.place(&format!("{}#hold", policy.name), client)
}
