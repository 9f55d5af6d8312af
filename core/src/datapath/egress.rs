//! Stage 3: readying a switched frame for one port's link.

use crate::filter::{FilterChain, FilterContext, Verdict};
use crate::frame::Frame;
use crate::offload;
use crate::stats::DropReason;

/// What a port's link takes as it is (`Link::offload`,
/// `Link::offload_udp`, `Link::mss_clamp`); the rest is finished in
/// software before it leaves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Takes {
    /// Offload metadata (super-frames, partial checksums) whole.
    pub offload: bool,
    /// UDP super-frames (USO) as well.
    pub udp: bool,
    /// TCP SYNs leaving through this link announce at most this MSS.
    pub mss: Option<u16>,
}

/// The egress stage of one port: what its link takes, the node's frame
/// limit and its egress chain.
#[derive(Clone, Copy)]
pub struct Egress<'a> {
    pub takes: Takes,
    pub max_frame: usize,
    pub chain: &'a dyn FilterChain,
}

impl Egress<'_> {
    /// Readies one queued frame for the link: finished in software (a
    /// checksum completed, a super-frame segmented) when the link cannot
    /// take its offload metadata or egress filters must see it whole, then
    /// clamped and filtered. Calls `out` once per frame to send, or per
    /// drop with its reason.
    pub fn run(
        &self,
        ctx: &FilterContext,
        frame: Frame,
        mut out: impl FnMut(Result<Frame, DropReason>),
    ) {
        let Some(vnet) = frame.meta.vnet else {
            return out(self.screen(ctx, frame));
        };
        let chain = self.chain;
        let fits = self.takes.offload
            && (self.takes.udp || !vnet.is_udp_gso())
            && (chain.is_empty() || frame.len() <= chain.max_super_frame());
        if fits {
            return out(self.screen(ctx, frame));
        }
        if offload::finish(frame, &vnet, |f| out(self.screen(ctx, f))).is_err() {
            out(Err(DropReason::BadOffload));
        }
    }

    fn screen(&self, ctx: &FilterContext, mut frame: Frame) -> Result<Frame, DropReason> {
        if let Some(max) = self.takes.mss {
            frame = clamp_mss(frame, max);
        }
        if self.chain.is_empty() {
            return Ok(frame);
        }
        if self.chain.filter(ctx, &mut frame) == Verdict::Drop {
            return Err(DropReason::EgressFilter);
        }
        // A super-frame a filter took whole must still fit its header.
        if let Some(vnet) = frame.meta.vnet {
            if offload::check(frame.as_ref(), &vnet, self.max_frame).is_err() {
                return Err(DropReason::EgressFilter);
            }
        }
        Ok(frame)
    }
}

/// A SYN announcing more than `max` gets `max` (copied: SYNs are few);
/// every other frame goes as it is, untouched and uncopied.
fn clamp_mss(mut frame: Frame, max: u16) -> Frame {
    if !crate::mss::needs_clamp(frame.as_ref(), max) {
        return frame;
    }
    let partial = frame
        .meta
        .vnet
        .is_some_and(|h| h.flags & offload::F_NEEDS_CSUM != 0);
    let mut bytes = frame.bytes().to_vec();
    if crate::mss::clamp(&mut bytes, max, partial) {
        frame.set_bytes(bytes);
    }
    frame
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::{Direction, NoFilter, PortKind};
    use crate::offload::tests::{tcp4_super, v6_super};
    use crate::switch::PortId;

    const CTX: FilterContext = FilterContext {
        direction: Direction::Egress,
        port: PortId(2),
        port_kind: PortKind::Link,
    };

    fn run(stage: Egress<'_>, frame: Frame) -> Vec<Result<Frame, DropReason>> {
        let mut v = Vec::new();
        stage.run(&CTX, frame, |r| v.push(r));
        v
    }

    fn stage(takes: Takes) -> Egress<'static> {
        Egress {
            takes,
            max_frame: 1518,
            chain: &NoFilter,
        }
    }

    const OFFLOAD: Takes = Takes {
        offload: true,
        udp: false,
        mss: None,
    };

    #[test]
    fn a_super_frame_leaves_whole_only_through_a_link_that_takes_it() {
        let payload = vec![9u8; 6000];
        let (bytes, h) = tcp4_super(&payload, false, 1448);
        let sup = || Frame::with_vnet(bytes.clone(), Some(h));
        let whole = run(stage(OFFLOAD), sup());
        assert!(matches!(&whole[..], [Ok(f)] if f.meta.vnet == Some(h)));
        let cut = run(stage(Takes::default()), sup());
        assert_eq!(cut.len(), payload.len().div_ceil(1448));
        assert!(cut
            .iter()
            .all(|r| matches!(r, Ok(f) if f.len() <= 1518 && f.meta.vnet.is_none())));
    }

    #[test]
    fn udp_super_frames_are_cut_for_a_link_without_uso() {
        let (bytes, h) = v6_super(&[5u8; 5000], 17, 1200);
        assert!(h.is_udp_gso());
        let sup = || Frame::with_vnet(bytes.clone(), Some(h));
        assert!(run(stage(OFFLOAD), sup()).len() > 1);
        let uso = Takes {
            udp: true,
            ..OFFLOAD
        };
        assert_eq!(run(stage(uso), sup()).len(), 1);
    }

    #[test]
    fn a_bad_super_frame_is_counted_and_a_filter_drop_is_counted() {
        let (bytes, mut h) = tcp4_super(&[1u8; 3000], false, 1448);
        h.csum_start = u16::MAX;
        assert_eq!(
            run(stage(Takes::default()), Frame::with_vnet(bytes, Some(h))),
            [Err(DropReason::BadOffload)]
        );
        struct DropAll;
        impl FilterChain for DropAll {
            fn is_empty(&self) -> bool {
                false
            }
            fn filter(&self, _: &FilterContext, _: &mut Frame) -> Verdict {
                Verdict::Drop
            }
        }
        let s = Egress {
            takes: Takes::default(),
            max_frame: 1518,
            chain: &DropAll,
        };
        assert_eq!(
            run(s, Frame::new(vec![0u8; 60])),
            [Err(DropReason::EgressFilter)]
        );
    }

    #[test]
    fn syns_are_clamped_when_the_link_asks() {
        // An IPv4 TCP SYN announcing MSS 1460 (checksums as sent).
        let syn = crate::mss::tests::syn_v4(1460, 0, 0x02);
        let clamp = Takes {
            mss: Some(1406),
            ..Takes::default()
        };
        let out = run(stage(clamp), Frame::new(syn.clone()));
        let [Ok(f)] = &out[..] else { panic!("{out:?}") };
        assert_eq!(crate::mss::tests::mss_of(f.as_ref()), 1406);
        let out = run(stage(Takes::default()), Frame::new(syn));
        let [Ok(f)] = &out[..] else { panic!("{out:?}") };
        assert_eq!(crate::mss::tests::mss_of(f.as_ref()), 1460);
    }
}
