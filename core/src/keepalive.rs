//! The keepalive state machine, sans-IO (as quinn-proto's timers): the
//! link tells it when it heard from the peer and when it sent, asks when to
//! wake, and is told what is due. No clock, no timer of its own: ws, udp
//! and the stream framing each drive one, so `--ping-interval` and
//! `--ping-timeout` mean the same on every transport.
//!
//! Semantics: a probe after every `interval` of the silence its wire's
//! [`Probing`] names (a probe answered restarts the count, one unanswered
//! is followed by another an interval later, so a proxy on the way never
//! sees a longer silence), and the link is dead after `interval + timeout`
//! without receiving anything at all.

use std::time::{Duration, Instant};

use crate::transport::Keepalive;

/// What [`KeepaliveMachine::poll`] says is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Due {
    /// Nothing yet: wake at [`KeepaliveMachine::poll_timeout`].
    Nothing,
    /// Send a probe now (a WebSocket Ping, a udp PING, a keepalive record).
    Probe,
    /// Nothing was received for this long: end the link.
    Dead(Duration),
}

/// Which silence a probe breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probing {
    /// `interval` without receiving: a probe the peer answers (ws's Ping
    /// and Pong), which keeps a proxy's read timeout from firing.
    Rx,
    /// `interval` without sending: a heartbeat the peer does not answer
    /// (the stream framing's empty record); each end sends its own.
    Tx,
    /// Whichever comes first (udp's PING and PONG: outbound traffic also
    /// keeps a NAT's mapping open).
    Either,
}

/// One link's keepalive.
#[derive(Clone, Debug)]
pub struct KeepaliveMachine {
    cfg: Keepalive,
    probing: Probing,
    /// When the peer was last heard from.
    heard: Instant,
    /// When something was last sent (a probe included).
    sent: Instant,
    /// When the last probe went out, if after `heard`.
    probed: Option<Instant>,
}

impl KeepaliveMachine {
    /// A machine for a link that starts (and so was heard from and sent
    /// to) at `now`, probing on receive silence ([`Probing::Rx`]).
    pub fn new(cfg: Keepalive, now: Instant) -> Self {
        KeepaliveMachine {
            cfg,
            probing: Probing::Rx,
            heard: now,
            sent: now,
            probed: None,
        }
    }

    /// The same, probing on the silence `probing` names.
    pub fn with_probing(mut self, probing: Probing) -> Self {
        self.probing = probing;
        self
    }

    pub fn config(&self) -> Keepalive {
        self.cfg
    }

    /// Something arrived from the peer at `at` (any frame or control
    /// message). Times before the last one are ignored.
    pub fn on_rx(&mut self, at: Instant) {
        if at > self.heard {
            self.heard = at;
            if self.probed.is_some_and(|p| p <= at) {
                self.probed = None;
            }
        }
    }

    /// Something was sent to the peer at `at`. Times before the last one
    /// are ignored.
    pub fn on_tx(&mut self, at: Instant) {
        self.sent = self.sent.max(at);
    }

    /// When the next probe is due, unless something is heard (or, as
    /// [`Probing`] says, sent) first.
    pub fn next_probe(&self) -> Instant {
        let rx = self.probed.unwrap_or(self.heard).max(self.heard) + self.cfg.interval;
        let tx = self.sent + self.cfg.interval;
        match self.probing {
            Probing::Rx => rx,
            Probing::Tx => tx,
            Probing::Either => rx.min(tx),
        }
    }

    /// When the link is dead unless something is heard first.
    pub fn dead_at(&self) -> Instant {
        self.heard + self.cfg.dead_after()
    }

    /// When something may be due: wake then and [`poll`](Self::poll).
    pub fn poll_timeout(&self) -> Instant {
        self.next_probe().min(self.dead_at())
    }

    /// What is due at `now`. A probe due is taken as sent.
    pub fn poll(&mut self, now: Instant) -> Due {
        if now >= self.dead_at() {
            return Due::Dead(now.saturating_duration_since(self.heard));
        }
        if self.probe_due(now) {
            return Due::Probe;
        }
        Due::Nothing
    }

    /// For a sending half that leaves the dead-line to its receiving half:
    /// true when a probe is due at `now` (then taken as sent).
    pub fn probe_due(&mut self, now: Instant) -> bool {
        if now < self.next_probe() {
            return false;
        }
        self.probed = Some(now);
        self.on_tx(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn machine(t0: Instant) -> KeepaliveMachine {
        KeepaliveMachine::new(
            Keepalive {
                interval: 2 * S,
                timeout: 10 * S,
            },
            t0,
        )
    }

    /// Runs the machine as a link would: sleeps to each timeout, answers
    /// every probe `answer` later (None: never); the probe times.
    fn probes(answer: Option<Duration>, until: Duration) -> (Vec<f64>, Option<f64>) {
        let t0 = Instant::now();
        let mut m = machine(t0);
        let mut out = Vec::new();
        let mut pong: Option<Instant> = None;
        let mut now = t0;
        while now < t0 + until {
            let next = m.poll_timeout();
            now = match pong {
                Some(p) if p < next => p,
                _ => next,
            };
            if pong.is_some_and(|p| p <= now) {
                m.on_rx(pong.take().unwrap());
            }
            match m.poll(now) {
                Due::Probe => {
                    out.push((now - t0).as_secs_f64());
                    pong = answer.map(|a| now + a);
                }
                Due::Dead(_) => return (out, Some((now - t0).as_secs_f64())),
                Due::Nothing => {}
            }
        }
        (out, None)
    }

    /// `--ping-interval 2`: answered Pings go out every 2 s of silence
    /// (the old timer pinged at 2, 12, 14, 24, 26: a proxy with a 5 s
    /// idle timeout cut the link).
    #[test]
    fn an_answered_probe_every_interval_of_silence() {
        let (p, dead) = probes(Some(Duration::from_millis(1)), 30 * S);
        assert_eq!(dead, None);
        let gaps: Vec<f64> = p.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(p.len() >= 13, "{p:?}");
        assert!(gaps.iter().all(|g| (*g - 2.001).abs() < 0.01), "{p:?}");
    }

    #[test]
    fn an_unanswered_link_is_probed_each_interval_then_dead_at_the_deadline() {
        let (p, dead) = probes(None, 30 * S);
        assert_eq!(p, vec![2.0, 4.0, 6.0, 8.0, 10.0]);
        assert_eq!(dead, Some(12.0));
    }

    #[test]
    fn traffic_holds_probes_off() {
        let t0 = Instant::now();
        let mut m = machine(t0);
        for i in 1..20 {
            let t = t0 + S * i / 2;
            m.on_rx(t);
            assert_eq!(m.poll(t), Due::Nothing);
        }
        assert_eq!(m.poll_timeout(), t0 + S * 19 / 2 + 2 * S);
        // An older time changes nothing.
        m.on_rx(t0);
        assert_eq!(m.poll_timeout(), t0 + S * 19 / 2 + 2 * S);
    }

    #[test]
    fn a_heartbeat_goes_after_every_interval_without_sending() {
        let t0 = Instant::now();
        let mut m = machine(t0).with_probing(Probing::Tx);
        // Frames sent every second hold heartbeats off, whatever is heard.
        for i in 1..=5 {
            m.on_tx(t0 + S * i);
            assert_eq!(m.poll(t0 + S * i), Due::Nothing);
        }
        assert_eq!(m.next_probe(), t0 + 7 * S);
        m.on_rx(t0 + 7 * S);
        assert_eq!(m.poll(t0 + 7 * S), Due::Probe);
        // The heartbeat counts as sent: the next one an interval later.
        assert_eq!(m.next_probe(), t0 + 9 * S);
        // Only receiving keeps it alive.
        assert_eq!(m.dead_at(), t0 + 19 * S);
    }

    #[test]
    fn either_silence_brings_a_probe() {
        let t0 = Instant::now();
        let mut m = machine(t0).with_probing(Probing::Either);
        // Hearing all the time but sending nothing: a probe each interval
        // of send silence (a NAT mapping needs outbound traffic).
        m.on_rx(t0 + S);
        m.on_rx(t0 + 2 * S);
        assert_eq!(m.poll(t0 + 2 * S), Due::Probe);
        // Sending all the time but hearing nothing: probes on rx silence.
        let mut m = machine(t0).with_probing(Probing::Either);
        for i in 1..=3 {
            m.on_tx(t0 + S * i / 2);
        }
        assert_eq!(m.next_probe(), t0 + 2 * S);
    }
}
