//! Whether a frame bound for one port's full queue waits for room.
//!
//! A unicast super-frame whose port's queue is full waits while the port
//! drains. A port that drains slower than frames arrive (a TAP, a link
//! whose TCP is the bottleneck) then slows its sources down instead of
//! losing frames: with super-frames a drop costs some 44 TCP segments and,
//! in bursts, retransmission timeouts. A port from which no frame leaves
//! for [`Patience::stuck_after`] is marked stuck: its frames are dropped at
//! once until it has drained to half its bound, so a peer that stopped
//! reading costs its sources this wait once. Wire-size and flooded frames
//! never wait: a flood of small frames costs no waiting either.

use std::time::Duration;

/// How long a unicast super-frame waits for room in its port's queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Patience {
    /// Nothing left the port for this long: the port is stuck.
    pub stuck_after: Duration,
    /// The frame waited this long in all: dropped (the port is not stuck).
    /// A port that frees a little now and then must not hold its source's
    /// reader (and so every other port it feeds) for ever.
    pub give_up_after: Duration,
}

impl Patience {
    /// For a port beside others: a wait must not hold them up.
    pub const SHARED: Patience = Patience {
        stuck_after: Duration::from_millis(20),
        give_up_after: Duration::from_millis(100),
    };
    /// For the only port the source can feed (a node of two ports: a
    /// client, a point-to-point server). Holding that source's reader then
    /// delays no other port, so the node waits out what a slow but live
    /// peer does: a receiver too busy to read closes its TCP window for
    /// hundreds of milliseconds at a time (seen as the persist timer of
    /// ws://'s connection under 4 TCP streams on 2 cores), and each
    /// super-frame dropped meanwhile cost an inner stream a retransmission
    /// timeout. The TAP's senders are held back meanwhile by the kernel
    /// (TCP small queues below their sockets), without loss.
    pub const SOLE: Patience = Patience {
        stuck_after: Duration::from_secs(2),
        give_up_after: Duration::from_secs(10),
    };

    /// The patience for a frame forwarded to one port of a node that has
    /// `ports` ports.
    pub fn for_ports(ports: usize) -> Patience {
        if ports == 2 {
            Patience::SOLE
        } else {
            Patience::SHARED
        }
    }
}

/// Where a frame forwarded to one port goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Into the queue now, or dropped as `queue_full` (a wire-size frame).
    Now,
    /// Into the queue now if there is room, else it waits (a super-frame),
    /// unless the port is stuck.
    NowOrWait,
    /// Behind the frames of this read that already wait, to keep their
    /// order.
    Behind,
}

impl Placement {
    /// The placement of a frame: `super_frame` (offload metadata for
    /// segmentation), `behind` (frames of this read already wait).
    pub fn of(super_frame: bool, behind: bool) -> Placement {
        match (behind, super_frame) {
            (true, _) => Placement::Behind,
            (false, true) => Placement::NowOrWait,
            (false, false) => Placement::Now,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_super_frames_wait_and_order_is_kept() {
        assert_eq!(Placement::of(false, false), Placement::Now);
        assert_eq!(Placement::of(true, false), Placement::NowOrWait);
        // Behind a waiting frame, whatever it is.
        assert_eq!(Placement::of(false, true), Placement::Behind);
        assert_eq!(Placement::of(true, true), Placement::Behind);
    }

    #[test]
    fn the_sole_port_gets_the_long_patience() {
        assert_eq!(Patience::for_ports(2), Patience::SOLE);
        for n in [0, 1, 3, 100] {
            assert_eq!(Patience::for_ports(n), Patience::SHARED);
        }
        for p in [Patience::SHARED, Patience::SOLE] {
            assert!(p.stuck_after < p.give_up_after);
        }
    }
}
