//! A request body as it arrives: the bytes counted against the plan's bound, and the moment
//! the body can be decided. The shell feeds it what Envoy reports and does what it answers.

use super::BodyPlan;

/// What the shell does after a body callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyStep {
    /// Let the data go on: nothing to check, decided already, or streaming within bounds.
    Continue,
    /// Hold it: the body is being buffered and is not complete yet.
    Pause,
    /// The body passed its bound: decide it with `Policy::body_overflow`.
    Overflow,
    /// The body is complete: check the `buffered` bytes Envoy holds with
    /// `Policy::evaluate_body`, or, for a body only counted (`None`), keep the header
    /// decision.
    Complete { buffered: Option<usize> },
}

/// The body of one request under a [`BodyPlan`]: bytes seen so far, and whether it was
/// decided (after which every callback is [`BodyStep::Continue`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyProgress {
    plan: BodyPlan,
    seen: u64,
    decided: bool,
}

impl BodyProgress {
    pub fn new(plan: BodyPlan) -> Self {
        BodyProgress {
            plan,
            seen: 0,
            decided: plan == BodyPlan::Skip,
        }
    }

    /// Whether the body was decided (a request that ends before is recorded as its headers
    /// were).
    pub fn is_decided(&self) -> bool {
        self.decided
    }

    /// A body callback: `body_size` is Envoy's `body_size`, this chunk when streaming (each
    /// chunk is handed over once) and everything so far when buffering (Envoy buffers while
    /// the shell pauses).
    pub fn on_body(&mut self, body_size: usize, end_of_stream: bool) -> BodyStep {
        if self.decided {
            return BodyStep::Continue;
        }
        let size = u64::try_from(body_size).unwrap_or(u64::MAX);
        let (max_bytes, buffering) = match self.plan {
            BodyPlan::Skip => return BodyStep::Continue,
            BodyPlan::Count { max_bytes } => {
                self.seen = self.seen.saturating_add(size);
                (max_bytes, false)
            }
            BodyPlan::Buffer { max_bytes } => {
                self.seen = size;
                (max_bytes, true)
            }
        };
        let overflow = self.seen > max_bytes;
        if !overflow && !end_of_stream {
            return if buffering {
                BodyStep::Pause
            } else {
                BodyStep::Continue
            };
        }
        self.decide(overflow, buffering, body_size)
    }

    /// The request's trailers: a body that ends with trailers (HTTP/2, gRPC) never has
    /// `end_of_stream` set on a body callback, so it is complete now.
    pub fn on_trailers(&mut self) -> BodyStep {
        if self.decided {
            return BodyStep::Continue;
        }
        let buffering = matches!(self.plan, BodyPlan::Buffer { .. });
        let size = usize::try_from(self.seen).unwrap_or(usize::MAX);
        self.decide(false, buffering, size)
    }

    fn decide(&mut self, overflow: bool, buffering: bool, buffered_size: usize) -> BodyStep {
        self.decided = true;
        if overflow {
            BodyStep::Overflow
        } else {
            BodyStep::Complete {
                buffered: buffering.then_some(buffered_size),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counted_body_streams_and_is_refused_past_its_bound() {
        let mut body = BodyProgress::new(BodyPlan::Count { max_bytes: 10 });
        assert_eq!(body.on_body(6, false), BodyStep::Continue);
        // Chunks add up: 6 + 5 passes 10.
        assert_eq!(body.on_body(5, false), BodyStep::Overflow);
        assert!(body.is_decided());
        assert_eq!(body.on_body(1, true), BodyStep::Continue);

        let mut body = BodyProgress::new(BodyPlan::Count { max_bytes: 10 });
        assert_eq!(body.on_body(4, false), BodyStep::Continue);
        assert_eq!(body.on_body(6, true), BodyStep::Complete { buffered: None });
        assert_eq!(body.on_trailers(), BodyStep::Continue);
    }

    #[test]
    fn a_buffered_body_pauses_until_complete_and_is_checked_whole() {
        let mut body = BodyProgress::new(BodyPlan::Buffer { max_bytes: 10 });
        assert!(!body.is_decided());
        // Envoy reports everything buffered so far, not the chunk.
        assert_eq!(body.on_body(4, false), BodyStep::Pause);
        assert_eq!(body.on_body(9, false), BodyStep::Pause);
        assert_eq!(
            body.on_body(10, true),
            BodyStep::Complete { buffered: Some(10) }
        );
        assert_eq!(body.on_body(10, true), BodyStep::Continue);

        let mut body = BodyProgress::new(BodyPlan::Buffer { max_bytes: 10 });
        assert_eq!(body.on_body(11, false), BodyStep::Overflow);
    }

    #[test]
    fn trailers_complete_a_body_that_never_saw_end_of_stream() {
        let mut body = BodyProgress::new(BodyPlan::Buffer { max_bytes: 10 });
        assert_eq!(body.on_body(7, false), BodyStep::Pause);
        assert_eq!(body.on_trailers(), BodyStep::Complete { buffered: Some(7) });
        assert_eq!(body.on_trailers(), BodyStep::Continue);

        let mut body = BodyProgress::new(BodyPlan::Count { max_bytes: 10 });
        assert_eq!(body.on_body(3, false), BodyStep::Continue);
        assert_eq!(body.on_trailers(), BodyStep::Complete { buffered: None });
    }

    #[test]
    fn nothing_to_check_is_decided_from_the_start() {
        let mut body = BodyProgress::new(BodyPlan::Skip);
        assert!(body.is_decided());
        assert_eq!(body.on_body(usize::MAX, true), BodyStep::Continue);
        assert_eq!(body.on_trailers(), BodyStep::Continue);
    }
}
