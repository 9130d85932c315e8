//! Envoy counters: one per decision and reason, visible at `/stats/prometheus` as
//! `api_guard_deny_<reason>`, `api_guard_dry_run_<reason>` and `api_guard_allow`, and `api_guard_rls_<outcome>` for global rate limits (Envoy strips
//! the `wasmcustom` namespace in Prometheus output; `/stats` shows `wasmcustom.api_guard.*`).

use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;

use crate::policy::GlobalOutcome;
use crate::policy::{Decision, Reason};

pub struct Metrics {
    allow: Option<u32>,
    /// Indexed like [`Reason::ALL`].
    deny: Vec<Option<u32>>,
    dry_run: Vec<Option<u32>>,
    /// Detections of checks in log mode (`threats: log`), indexed like [`Reason::ALL`].
    logged: Vec<Option<u32>>,
    /// Global rate limit outcomes, indexed like [`GlobalOutcome::ALL`].
    rls: Vec<Option<u32>>,
}

impl Metrics {
    /// Defines every counter up front so that zeros are visible before the first denial.
    pub fn define() -> Self {
        let counter = |name: String| hostcalls::define_metric(MetricType::Counter, &name).ok();
        Metrics {
            allow: counter("api_guard.allow".into()),
            deny: Reason::ALL
                .iter()
                .map(|r| counter(format!("api_guard.deny.{}", r.code())))
                .collect(),
            dry_run: Reason::ALL
                .iter()
                .map(|r| counter(format!("api_guard.dry_run.{}", r.code())))
                .collect(),
            logged: Reason::ALL
                .iter()
                .map(|r| counter(format!("api_guard.log.{}", r.code())))
                .collect(),
            rls: GlobalOutcome::ALL
                .iter()
                .map(|o| counter(format!("api_guard.rls.{}", o.code())))
                .collect(),
        }
    }

    pub fn count(&self, decision: &Decision) {
        let id = match decision.denial() {
            None => self.allow,
            Some(denial) => {
                let table = if decision.dry_run {
                    &self.dry_run
                } else {
                    &self.deny
                };
                Reason::ALL
                    .iter()
                    .position(|r| *r == denial.reason)
                    .and_then(|i| table.get(i).copied().flatten())
            }
        };
        if let Some(id) = id {
            let _ = hostcalls::increment_metric(id, 1);
        }
        if let Some(outcome) = decision.global_outcome {
            let id = GlobalOutcome::ALL
                .iter()
                .position(|o| *o == outcome)
                .and_then(|i| self.rls.get(i).copied().flatten());
            if let Some(id) = id {
                let _ = hostcalls::increment_metric(id, 1);
            }
        }
        for reason in &decision.logged {
            let id = Reason::ALL
                .iter()
                .position(|r| r == reason)
                .and_then(|i| self.logged.get(i).copied().flatten());
            if let Some(id) = id {
                let _ = hostcalls::increment_metric(id, 1);
            }
        }
    }
}
