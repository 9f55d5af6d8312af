//! Stage 1: what a frame from a link must pass before the switch sees it.

use std::fmt;

use bytes::Bytes;

use crate::filter::{FilterChain, FilterContext, Verdict};
use crate::frame::Frame;
use crate::offload::{self, OffloadError, Unfit};
use crate::stats::DropReason;
use crate::wire::{self, EthernetFrame};

/// Why a frame from a link was not switched. [`Refusal::reason`] is the
/// counter it goes to; [`Refusal::logged`] says whether it is worth a
/// (rate-limited) line: a filter's own drop is policy, not news.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Longer than max frame (`offloaded`: a super-frame's segment).
    Oversize {
        len: usize,
        max: usize,
        offloaded: bool,
    },
    /// Offload metadata that does not describe the frame.
    BadOffload(OffloadError),
    /// Too short for an Ethernet header.
    Runt(wire::WireError),
    /// The ingress chain said drop.
    Filtered,
    /// The ingress chain rewrote the frame into something unswitchable;
    /// `Some` when the offload header no longer fits it.
    Broken(Option<Unfit>),
}

impl Refusal {
    /// The drop counter this refusal goes to.
    pub fn reason(&self) -> DropReason {
        match self {
            Refusal::Oversize { .. } => DropReason::Oversize,
            Refusal::BadOffload(_) => DropReason::BadOffload,
            Refusal::Runt(_) => DropReason::Runt,
            Refusal::Filtered | Refusal::Broken(_) => DropReason::IngressFilter,
        }
    }

    /// True when the refusal deserves a log line.
    pub fn logged(&self) -> bool {
        !matches!(self, Refusal::Filtered | Refusal::Broken(None))
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Oversize {
                len,
                max,
                offloaded,
            } => {
                let how = if *offloaded { " (offloaded frame)" } else { "" };
                write!(f, "{len} bytes > max {max}{how}")
            }
            Refusal::BadOffload(e) => e.fmt(f),
            Refusal::Runt(e) => e.fmt(f),
            Refusal::Filtered => f.write_str("dropped by an ingress filter"),
            Refusal::Broken(Some(e)) => write!(f, "after the ingress filters: {e}"),
            Refusal::Broken(None) => f.write_str("an ingress filter broke the frame"),
        }
    }
}

/// The ingress stage of one node: its frame limit and ingress chain.
#[derive(Clone, Copy)]
pub struct Ingress<'a> {
    pub max_frame: usize,
    pub chain: &'a dyn FilterChain,
}

impl Ingress<'_> {
    /// Readies one frame from a link for the switch. Calls `out` once per
    /// frame to switch, or per refusal: a frame is switched whole unless it
    /// carries offload metadata the switch or the filters must not see
    /// (a partial checksum is completed, a super-frame too big for the
    /// filters is segmented), and every segment then passes on its own.
    pub fn run(
        &self,
        ctx: &FilterContext,
        frame: Frame,
        mut out: impl FnMut(Result<Ready, Refusal>),
    ) {
        let Some(vnet) = frame.meta.vnet else {
            return out(self.screen(ctx, frame));
        };
        let max = self.max_frame;
        match offload::check(frame.as_ref(), &vnet, max) {
            Ok(()) => {}
            Err(Unfit::Oversize(len)) => {
                return out(Err(Refusal::Oversize {
                    len,
                    max,
                    offloaded: true,
                }))
            }
            Err(Unfit::Bad(e)) => return out(Err(Refusal::BadOffload(e))),
        }
        // A checksum-only frame is completed here, before filters and the
        // switch see it: its offsets could point anywhere past the
        // Ethernet header, and no byte may change after they looked.
        let chain = self.chain;
        if !vnet.is_gso() || (!chain.is_empty() && frame.len() > chain.max_super_frame()) {
            // `finish` fails before it hands out any segment.
            if let Err(e) = offload::finish(frame, &vnet, |f| out(self.screen(ctx, f))) {
                out(Err(Refusal::BadOffload(e)));
            }
            return;
        }
        out(self.screen(ctx, frame))
    }

    /// One frame (a wire frame, or a super-frame the chain takes whole):
    /// its size and header, then the chain, then what the chain left.
    fn screen(&self, ctx: &FilterContext, mut frame: Frame) -> Result<Ready, Refusal> {
        let (len, max) = (frame.len(), self.max_frame);
        if len > max && frame.meta.vnet.is_none() {
            return Err(Refusal::Oversize {
                len,
                max,
                offloaded: false,
            });
        }
        let view = EthernetFrame::new_checked(frame.bytes().clone()).map_err(Refusal::Runt)?;
        if self.chain.is_empty() {
            return Ok(Ready { frame, view });
        }
        drop(view);
        if self.chain.filter(ctx, &mut frame) == Verdict::Drop {
            return Err(Refusal::Filtered);
        }
        // A filter may have rewritten it into something unswitchable.
        if let Some(vnet) = frame.meta.vnet {
            // Whole super-frame (the filter kept its length): its header
            // must still describe it.
            offload::check(frame.as_ref(), &vnet, max).map_err(|e| Refusal::Broken(Some(e)))?;
        } else if frame.len() > max {
            return Err(Refusal::Broken(None));
        }
        let view =
            EthernetFrame::new_checked(frame.bytes().clone()).map_err(|_| Refusal::Broken(None))?;
        Ok(Ready { frame, view })
    }
}

/// A frame ready for the switch, with its header parsed (once: the view
/// shares the frame's bytes).
#[derive(Debug)]
pub struct Ready {
    pub frame: Frame,
    pub view: EthernetFrame<Bytes>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::{Direction, NoFilter, PortKind};
    use crate::offload::tests::tcp4_super;
    use crate::switch::PortId;

    const CTX: FilterContext = FilterContext {
        direction: Direction::Ingress,
        port: PortId(1),
        port_kind: PortKind::Link,
    };

    fn eth(len: usize) -> Frame {
        let mut b = vec![0u8; len.max(14)];
        b[..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        b[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        b[12..14].copy_from_slice(&[0x88, 0xb5]);
        b.truncate(len);
        Frame::new(b)
    }

    fn run(stage: Ingress<'_>, frame: Frame) -> Vec<Result<Frame, Refusal>> {
        let mut v = Vec::new();
        stage.run(&CTX, frame, |r| {
            v.push(r.map(|ready| {
                // The view is of the frame's own bytes.
                assert_eq!(&ready.view.into_inner()[..], ready.frame.as_ref());
                ready.frame
            }))
        });
        v
    }

    /// A chain that does one thing to every frame, and counts them.
    struct Chain<F>(F, std::sync::atomic::AtomicUsize, usize);
    impl<F: Fn(&mut Frame) -> Verdict + Send + Sync> FilterChain for Chain<F> {
        fn is_empty(&self) -> bool {
            false
        }
        fn max_super_frame(&self) -> usize {
            self.2
        }
        fn filter(&self, _: &FilterContext, f: &mut Frame) -> Verdict {
            self.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            (self.0)(f)
        }
    }
    fn chain<F>(f: F, super_frames: usize) -> Chain<F> {
        Chain(f, Default::default(), super_frames)
    }

    #[test]
    fn wire_frames_pass_or_are_refused_by_size() {
        let stage = Ingress {
            max_frame: 1518,
            chain: &NoFilter,
        };
        let ok = run(stage, eth(1518));
        assert!(matches!(&ok[..], [Ok(f)] if f.len() == 1518));
        let big = run(stage, eth(1519));
        assert_eq!(
            big,
            [Err(Refusal::Oversize {
                len: 1519,
                max: 1518,
                offloaded: false
            })]
        );
        assert_eq!(big[0].as_ref().unwrap_err().reason(), DropReason::Oversize);
        let runt = run(stage, eth(13));
        assert!(
            matches!(&runt[..], [Err(r @ Refusal::Runt(_))] if r.reason() == DropReason::Runt && r.logged())
        );
    }

    #[test]
    fn a_super_frame_crosses_whole_unless_the_filters_must_see_it() {
        let payload: Vec<u8> = (0..8000u32).map(|i| i as u8).collect();
        let (bytes, h) = tcp4_super(&payload, false, 1448);
        let sup = || Frame::with_vnet(bytes.clone(), Some(h));
        // No filters: one frame, the super-frame itself.
        let whole = run(
            Ingress {
                max_frame: 1518,
                chain: &NoFilter,
            },
            sup(),
        );
        assert!(matches!(&whole[..], [Ok(f)] if f.len() == bytes.len() && f.meta.vnet.is_some()));
        // A chain that takes super-frames this big: whole, filtered once.
        let c = chain(|_: &mut Frame| Verdict::Pass, 65536);
        let v = run(
            Ingress {
                max_frame: 1518,
                chain: &c,
            },
            sup(),
        );
        assert_eq!(v.len(), 1);
        assert_eq!(c.1.load(std::sync::atomic::Ordering::Relaxed), 1);
        // A chain that takes none: segments of at most max frame, each
        // filtered, together the payload.
        let c = chain(|_: &mut Frame| Verdict::Pass, 0);
        let v = run(
            Ingress {
                max_frame: 1518,
                chain: &c,
            },
            sup(),
        );
        let segs: Vec<Frame> = v.into_iter().map(Result::unwrap).collect();
        assert_eq!(segs.len(), payload.len().div_ceil(1448));
        assert_eq!(c.1.load(std::sync::atomic::Ordering::Relaxed), segs.len());
        assert!(segs
            .iter()
            .all(|f| f.len() <= 1518 && f.meta.vnet.is_none()));
        let hdr = usize::from(h.hdr_len);
        let joined: Vec<u8> = segs
            .iter()
            .flat_map(|f| f.as_ref()[hdr..].to_vec())
            .collect();
        assert_eq!(joined, payload);
    }

    #[test]
    fn bad_offload_and_oversize_segments_are_refused_before_anything_is_switched() {
        let (bytes, mut h) = tcp4_super(&[7u8; 4000], false, 1448);
        h.csum_start = 4;
        let v = run(
            Ingress {
                max_frame: 1518,
                chain: &NoFilter,
            },
            Frame::with_vnet(bytes.clone(), Some(h)),
        );
        assert!(
            matches!(&v[..], [Err(r @ Refusal::BadOffload(_))] if r.reason() == DropReason::BadOffload)
        );
        // Segments of 1448 bytes do not fit a max frame of 1000.
        let (bytes, h) = tcp4_super(&[7u8; 4000], false, 1448);
        let v = run(
            Ingress {
                max_frame: 1000,
                chain: &NoFilter,
            },
            Frame::with_vnet(bytes, Some(h)),
        );
        assert!(matches!(
            &v[..],
            [Err(Refusal::Oversize {
                offloaded: true,
                ..
            })]
        ));
    }

    #[test]
    fn filter_drops_are_counted_silently_and_broken_rewrites_are_caught() {
        let drop = chain(|_: &mut Frame| Verdict::Drop, 0);
        let stage = Ingress {
            max_frame: 1518,
            chain: &drop,
        };
        let v = run(stage, eth(100));
        assert_eq!(v, [Err(Refusal::Filtered)]);
        assert_eq!(Refusal::Filtered.reason(), DropReason::IngressFilter);
        assert!(!Refusal::Filtered.logged());
        let shrink = chain(
            |f: &mut Frame| {
                f.set_bytes(vec![0u8; 10]);
                Verdict::Pass
            },
            0,
        );
        let stage = Ingress {
            max_frame: 1518,
            chain: &shrink,
        };
        assert_eq!(run(stage, eth(100)), [Err(Refusal::Broken(None))]);
    }

    proptest::proptest! {
        /// Whatever a link hands in, every frame that comes out is a whole
        /// Ethernet frame of at most max frame (or a super-frame the switch
        /// may carry whole), and every input yields at least one outcome.
        #[test]
        fn only_switchable_frames_come_out(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..2000),
            max in 60usize..1600,
            vnet in proptest::option::of((0u8..4, 0u8..6, 0u16..200, 0u16..2000, 0u16..200, 0u16..40)),
        ) {
            let h = vnet.map(|(flags, gso_type, hdr_len, gso_size, csum_start, csum_offset)| {
                offload::VnetHdr { flags, gso_type, hdr_len, gso_size, csum_start, csum_offset }
            });
            let stage = Ingress { max_frame: max, chain: &NoFilter };
            let out = run(stage, Frame::with_vnet(bytes, h));
            proptest::prop_assert!(!out.is_empty());
            for f in out.into_iter().flatten() {
                proptest::prop_assert!(f.len() >= wire::HEADER_LEN);
                match f.meta.vnet {
                    None => proptest::prop_assert!(f.len() <= max),
                    Some(h) => {
                        proptest::prop_assert!(h.is_gso());
                        proptest::prop_assert!(offload::check(f.as_ref(), &h, max).is_ok());
                    }
                }
            }
        }
    }
}
