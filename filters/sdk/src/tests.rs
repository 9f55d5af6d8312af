//! Unit tests (run natively).

extern crate std;

use crate::*;
use core::fmt::Write;
use std::vec::Vec;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

const DST: &str = "ffffffffffff";
const SRC: &str = "020000000001";

/// A buffer of `cap` bytes holding `bytes`; returns (buffer, len).
fn buf(bytes: &[u8], cap: usize) -> (Vec<u8>, usize) {
    let mut b = std::vec![0xeeu8; cap];
    b[..bytes.len()].copy_from_slice(bytes);
    (b, bytes.len())
}

fn ipv4(proto: u8) -> Vec<u8> {
    let mut h = hex("450000140000000040000000c0000201c0000202");
    h[9] = proto;
    h
}

#[test]
fn frame_new_bounds() {
    let mut b = [0u8; 20];
    assert!(Frame::new(&mut b, 13).is_none());
    assert!(Frame::new(&mut b, 21).is_none());
    let f = Frame::new(&mut b, 14).unwrap();
    assert_eq!(f.len(), 14);
    assert!(!f.is_empty());
    assert_eq!(f.capacity(), 20);
}

#[test]
fn macs() {
    let (mut b, len) = buf(&hex(&[DST, SRC, "0800"].concat()), 64);
    let mut f = Frame::new(&mut b, len).unwrap();
    assert_eq!(f.dst(), [0xff; 6]);
    assert_eq!(f.src(), [2, 0, 0, 0, 0, 1]);
    f.set_src([2, 0, 0, 0, 0, 9]);
    f.set_dst([1, 2, 3, 4, 5, 6]);
    assert_eq!(f.bytes(), &hex("0102030405060200000000090800")[..]);
    assert_eq!(f.dst(), [1, 2, 3, 4, 5, 6]);
}

#[test]
fn ethertype_through_tags() {
    // Untagged ARP.
    let (mut b, len) = buf(&hex(&[DST, SRC, "0806", "0001"].concat()), 64);
    let f = Frame::new(&mut b, len).unwrap();
    assert_eq!(f.ethertype(), ETHERTYPE_ARP);
    assert_eq!(f.outer_ethertype(), ETHERTYPE_ARP);
    assert_eq!(f.vlan_id(), None);
    assert_eq!(f.vlan_tags(), 0);
    assert_eq!(f.header_len(), 14);
    assert_eq!(f.payload(), &[0, 1]);

    // One 802.1Q tag, PCP 5, VID 100.
    let (mut b, len) = buf(&hex(&[DST, SRC, "8100a064", "0800", "aa"].concat()), 64);
    let f = Frame::new(&mut b, len).unwrap();
    assert_eq!(f.ethertype(), ETHERTYPE_IPV4);
    assert_eq!(f.outer_ethertype(), TPID_8021Q);
    assert_eq!(f.vlan_tci(), Some(0xa064));
    assert_eq!(f.vlan_id(), Some(100));
    assert_eq!(f.vlan_tags(), 1);
    assert_eq!(f.payload(), &[0xaa]);

    // QinQ: 802.1ad outer VID 10, 802.1Q inner VID 20.
    let (mut b, len) = buf(
        &hex(&[DST, SRC, "88a8000a", "81000014", "86dd"].concat()),
        64,
    );
    let f = Frame::new(&mut b, len).unwrap();
    assert_eq!(f.ethertype(), ETHERTYPE_IPV6);
    assert_eq!(f.vlan_id(), Some(10));
    assert_eq!(f.vlan_tags(), 2);
    assert_eq!(f.header_len(), 22);
    assert!(f.payload().is_empty());

    // A third tag is not looked through.
    let (mut b, len) = buf(
        &hex(&[DST, SRC, "88a8000a", "81000014", "8100001e", "0800"].concat()),
        64,
    );
    let f = Frame::new(&mut b, len).unwrap();
    assert_eq!(f.ethertype(), TPID_8021Q);
    assert_eq!(f.vlan_tags(), 2);

    // A truncated tag is not a tag.
    let (mut b, len) = buf(&hex(&[DST, SRC, "8100000a"].concat()), 64);
    let f = Frame::new(&mut b, len).unwrap();
    assert_eq!(f.ethertype(), TPID_8021Q);
    assert_eq!(f.vlan_id(), None);
    assert_eq!(f.header_len(), 14);
}

#[test]
fn vlan_push_pop_retag() {
    let untagged = hex(&[DST, SRC, "0800", "45000014"].concat());
    let tagged = hex(&[DST, SRC, "8100e00a", "0800", "45000014"].concat());
    let (mut b, len) = buf(&untagged, 64);
    let mut f = Frame::new(&mut b, len).unwrap();

    assert!(!f.pop_vlan());
    assert!(!f.set_vlan_id(5));
    assert!(f.push_vlan(TPID_8021Q, 0xe00a));
    assert_eq!(f.bytes(), &tagged[..]);
    assert_eq!(f.len(), untagged.len() + 4);
    assert_eq!(f.vlan_id(), Some(10));

    // Retag keeps PCP 7 and DEI 0.
    assert!(f.set_vlan_id(0xabc));
    assert_eq!(f.vlan_tci(), Some(0xeabc));
    assert!(!f.set_vlan_id(0x1000));
    assert_eq!(f.vlan_tci(), Some(0xeabc));
    assert!(f.set_vlan_id(10));

    assert!(f.pop_vlan());
    assert_eq!(f.bytes(), &untagged[..]);
    assert!(!f.pop_vlan());

    // QinQ push then pop outer.
    assert!(f.push_vlan(TPID_8021Q, 20));
    assert!(f.push_vlan(TPID_8021AD, 10));
    assert_eq!(f.vlan_id(), Some(10));
    assert_eq!(f.ethertype(), ETHERTYPE_IPV4);
    assert!(f.pop_vlan());
    assert_eq!(f.vlan_id(), Some(20));
    assert!(f.pop_vlan());
    assert_eq!(f.bytes(), &untagged[..]);
}

#[test]
fn push_vlan_respects_capacity() {
    let frame = hex(&[DST, SRC, "0800", "0000"].concat());
    let (mut b, len) = buf(&frame, 19);
    let mut f = Frame::new(&mut b, len).unwrap();
    assert!(!f.push_vlan(TPID_8021Q, 1));
    assert_eq!(f.bytes(), &frame[..]);
    let (mut b, len) = buf(&frame, 20);
    let mut f = Frame::new(&mut b, len).unwrap();
    assert!(f.push_vlan(TPID_8021Q, 1));
    assert_eq!(f.len(), 20);
}

#[test]
fn ip_protocol() {
    let v4 = |proto: u8, tags: &str| {
        let mut bytes = hex(&[DST, SRC, tags, "0800"].concat());
        bytes.extend(ipv4(proto));
        bytes
    };
    for (bytes, want) in [
        (v4(1, ""), Some(1)),
        (v4(6, ""), Some(6)),
        (v4(17, "8100000a"), Some(17)),
        (v4(1, "88a8000a81000014"), Some(1)),
    ] {
        let (mut b, len) = buf(&bytes, 128);
        assert_eq!(Frame::new(&mut b, len).unwrap().ip_protocol(), want);
    }

    // Truncated IPv4 header, wrong version, not IP.
    let mut short = v4(1, "");
    short.truncate(14 + 19);
    let mut wrong = v4(1, "");
    wrong[14] = 0x65;
    let mut arp = v4(1, "");
    arp[13] = 6;
    for bytes in [short, wrong, arp] {
        let (mut b, len) = buf(&bytes, 128);
        assert_eq!(Frame::new(&mut b, len).unwrap().ip_protocol(), None);
    }

    // IPv6: ICMPv6 directly, and behind hop-by-hop + fragment headers.
    let v6 = |next: u8, ext: &str| {
        let mut bytes = hex(&[DST, SRC, "86dd"].concat());
        let mut h = hex("6000000000000000");
        h[6] = next;
        h.extend([0u8; 32]);
        bytes.extend(h);
        bytes.extend(hex(ext));
        bytes
    };
    let cases = [
        (v6(58, ""), Some(58)),
        (v6(6, ""), Some(6)),
        // hop-by-hop (len 0: 8 bytes) -> fragment -> ICMPv6
        (v6(0, "2c00000000000000" /* hbh */), Some(44)),
        (v6(0, "2c000000000000003a00000000000000"), Some(58)),
        // truncated hop-by-hop: its own number
        (v6(0, ""), Some(0)),
    ];
    for (bytes, want) in cases {
        let (mut b, len) = buf(&bytes, 256);
        assert_eq!(Frame::new(&mut b, len).unwrap().ip_protocol(), want);
    }
}

#[test]
fn modified_tracking() {
    let frame = hex(&[DST, SRC, "8100000a", "0800", "0000"].concat());
    let check = |edit: &dyn Fn(&mut Frame) -> bool, want: bool| {
        let (mut b, len) = buf(&frame, 64);
        let mut f = Frame::new(&mut b, len).unwrap();
        assert!(!f.is_modified());
        let _ = f.bytes();
        let _ = f.payload();
        let _ = (
            f.dst(),
            f.src(),
            f.ethertype(),
            f.vlan_id(),
            f.ip_protocol(),
        );
        assert!(!f.is_modified());
        edit(&mut f);
        assert_eq!(f.is_modified(), want);
    };
    check(&|f| f.set_vlan_id(0x1000), false);
    check(&|f| f.set_len(13), false);
    check(
        &|f| {
            f.truncate(40);
            true
        },
        false,
    );
    check(
        &|f| {
            f.truncate(1);
            true
        },
        true,
    );
    check(&|f| f.set_vlan_id(3), true);
    check(&|f| f.pop_vlan(), true);
    check(&|f| f.push_vlan(TPID_8021Q, 1), true);
    check(&|f| f.set_len(20), true);
    check(
        &|f| {
            f.set_src([0; 6]);
            true
        },
        true,
    );
    check(
        &|f| {
            f.set_dst([0; 6]);
            true
        },
        true,
    );
    check(
        &|f| {
            f.bytes_mut();
            true
        },
        true,
    );
    check(
        &|f| {
            f.payload_mut();
            true
        },
        true,
    );
    check(
        &|f| {
            f.buffer_mut();
            true
        },
        true,
    );
}

#[test]
fn truncate_and_set_len() {
    let (mut b, _) = buf(&hex(&[DST, SRC, "0800", "01020304"].concat()), 32);
    let mut f = Frame::new(&mut b, 18).unwrap();
    f.truncate(40);
    assert_eq!(f.len(), 18);
    f.truncate(16);
    assert_eq!(f.len(), 16);
    f.truncate(3);
    assert_eq!(f.len(), 14);
    assert!(!f.set_len(13));
    assert!(!f.set_len(33));
    assert!(f.set_len(32));
    assert_eq!(f.bytes().len(), 32);
    assert_eq!(f.buffer_mut().len(), 32);
}

#[test]
fn config_pairs() {
    let c = Config::new(" drop=0x0806+0x86dd , ,flag, a = 1 ,a=2,");
    let pairs: Vec<_> = c.iter().collect();
    assert_eq!(
        pairs,
        [
            ("drop", "0x0806+0x86dd"),
            ("flag", ""),
            ("a", "1"),
            ("a", "2")
        ]
    );
    assert_eq!(c.get("a"), Some("2"));
    assert_eq!(c.get("flag"), Some(""));
    assert_eq!(c.get("nope"), None);
    assert_eq!(c.get_u64("a"), Some(Some(2)));
    assert_eq!(c.get_u64("flag"), Some(None));
    assert!(!c.is_empty());
    assert!(Config::new("").is_empty());
    assert!(Config::new(" , ,").is_empty());
    let list: Vec<_> = split_list(c.get("drop").unwrap()).collect();
    assert_eq!(list, ["0x0806", "0x86dd"]);
    assert_eq!((&c).into_iter().count(), 4);
    assert_eq!(Config::new("k=a=b").get("k"), Some("a=b"));
}

#[test]
fn numbers() {
    assert_eq!(parse_u64("0"), Some(0));
    assert_eq!(parse_u64("1500"), Some(1500));
    assert_eq!(parse_u64("0x86dd"), Some(0x86dd));
    assert_eq!(parse_u64("0X86DD"), Some(0x86dd));
    assert_eq!(parse_u64("18446744073709551615"), Some(u64::MAX));
    assert_eq!(parse_u64("18446744073709551616"), None);
    assert_eq!(parse_u64("0xffffffffffffffff"), Some(u64::MAX));
    assert_eq!(parse_u64("0x10000000000000000"), None);
    for bad in ["", "0x", "-1", "+1", "1.5", "12a", "0xg", " 1"] {
        assert_eq!(parse_u64(bad), None, "{bad:?}");
    }
    assert_eq!(parse_bool("yes"), Some(true));
    assert_eq!(parse_bool("0"), Some(false));
    assert_eq!(parse_bool("maybe"), None);
}

#[test]
fn macs_parse() {
    let m = [0x02, 0, 0, 0, 0xab, 0x01];
    assert_eq!(parse_mac("02:00:00:00:ab:01"), Some(m));
    assert_eq!(parse_mac("02-00-00-00-AB-01"), Some(m));
    assert_eq!(parse_mac("02000000ab01"), Some(m));
    for bad in [
        "",
        "02:00:00:00:ab",
        "02:00:00:00:ab:0g",
        "02:00-00:00:ab:01",
        "02.00.00.00.ab.01",
        "020000000ab01",
        "02:00:00:00:ab:011",
    ] {
        assert_eq!(parse_mac(bad), None, "{bad:?}");
    }
    let mut line = LineBuf::<32>::new();
    write!(line, "{}", Mac(m)).unwrap();
    assert_eq!(line.as_str(), "02:00:00:00:ab:01");
}

#[test]
fn linebuf_cuts_at_char_boundary() {
    let mut line = LineBuf::<5>::new();
    write!(line, "ab").unwrap();
    write!(line, "cé!").unwrap(); // 'é' is 2 bytes: "abcé" is 5
    assert_eq!(line.as_str(), "abcé");
    let mut line = LineBuf::<4>::new();
    write!(line, "abcé").unwrap();
    assert_eq!(line.as_str(), "abc");
    assert_eq!(line.len(), 3);
    line.clear();
    assert!(line.is_empty());
}

#[test]
fn scope() {
    let ctx = |direction, port_kind| Ctx {
        direction,
        port: 7,
        port_kind,
    };
    let mut s = Scope::ALL;
    assert!(s.matches(&ctx(Direction::Egress, PortKind::Other(9))));
    assert_eq!(s.parse_key("direction", "ingress"), Ok(true));
    assert_eq!(s.parse_key("port_kind", "tap"), Ok(true));
    assert_eq!(s.parse_key("other", "x"), Ok(false));
    assert_eq!(s.parse_key("direction", "up"), Err(code::BAD_VALUE));
    assert_eq!(s.parse_key("port_kind", "wifi"), Err(code::BAD_VALUE));
    assert!(s.matches(&ctx(Direction::Ingress, PortKind::Tap)));
    assert!(!s.matches(&ctx(Direction::Egress, PortKind::Tap)));
    assert!(!s.matches(&ctx(Direction::Ingress, PortKind::Link)));
    assert_eq!(s.parse_key("direction", "both"), Ok(true));
    assert_eq!(s.parse_key("port_kind", "any"), Ok(true));
    assert_eq!(s, Scope::ALL);
}

#[test]
fn global_and_counters() {
    static G: Global<u32> = Global::new(1);
    G.with(|v| *v += 1);
    assert_eq!(G.with(|v| *v), 2);
    assert!(Counter::define("rate_limited_2").is_some());
    assert!(Counter::define("").is_none());
    assert!(Counter::define("Upper").is_none());
    assert!(Counter::define("a-b").is_none());
    assert!(Counter::define(&"a".repeat(65)).is_none());
    assert!(Counter::define(&"a".repeat(64)).is_some());
    assert_eq!(now_ns(), 0);
    log_info("ignored off wasm");
    log_fmt(Level::Warn, format_args!("{}", 1));
    assert_eq!(Level::parse("debug"), Some(Level::Debug));
    assert_eq!(Level::Trace as i32, abi::LOG_TRACE);
}

#[test]
#[should_panic(expected = "borrowed twice")]
fn global_nested_borrow_panics() {
    static G: Global<u32> = Global::new(0);
    G.with(|_| G.with(|_| ()));
}

/// The exports `export_filter!` emits, driven like the host drives them.
mod exported {
    use crate::*;

    static MIN: Global<usize> = Global::new(0);

    fn init(config: &Config) -> Result<(), i32> {
        let mut min = 14;
        for (k, v) in config {
            match k {
                "min" => min = parse_u64(v).ok_or(code::BAD_VALUE)? as usize,
                "zero" => return Err(0),
                _ => return Err(code::UNKNOWN_KEY),
            }
        }
        MIN.with(|m| *m = min);
        Ok(())
    }

    /// Drops frames shorter than `min`; tags egress frames on TAP ports with
    /// VID = port; passes the rest.
    fn filter(frame: &mut Frame, ctx: &Ctx) -> Verdict {
        if frame.len() < MIN.with(|m| *m) {
            return Verdict::Drop;
        }
        if ctx.direction == Direction::Egress && ctx.port_kind == PortKind::Tap {
            frame.push_vlan(TPID_8021Q, ctx.port as u16);
        }
        capture(frame);
        Verdict::Pass
    }

    crate::export_filter!(filter, init = init);

    fn load(bytes: &[u8]) {
        __private::BUFFER.with(|b| b.0[..bytes.len()].copy_from_slice(bytes));
    }

    fn read(len: usize) -> super::Vec<u8> {
        __private::BUFFER.with(|b| b.0[..len].to_vec())
    }

    #[test]
    fn exports() {
        assert_eq!(etherws_abi_version(), 1);
        assert_eq!(etherws_frame_capacity(), CAPACITY as i32);
        assert_eq!(
            etherws_frame_buffer(),
            __private::buffer_ptr() as usize as i32
        );

        // init
        load(b"min=20");
        assert_eq!(etherws_init(6), 0);
        load(b"min=x");
        assert_eq!(etherws_init(5), code::BAD_VALUE);
        load(b"what=1");
        assert_eq!(etherws_init(6), code::UNKNOWN_KEY);
        load(b"zero");
        assert_eq!(etherws_init(4), code::BAD_VALUE);
        load(&[0xff, 0xfe]);
        assert_eq!(etherws_init(2), code::NOT_UTF8);
        assert_eq!(etherws_init(-1), code::BAD_LENGTH);
        assert_eq!(etherws_init(CAPACITY as i32 + 1), code::BAD_LENGTH);
        assert_eq!(etherws_init(0), 0); // empty: back to min 14

        // A filter without init accepts only an empty configuration.
        load(b"a=1");
        assert_eq!(__private::run_no_init(3), code::NO_CONFIG_EXPECTED);
        load(b" , ");
        assert_eq!(__private::run_no_init(3), 0);
        assert_eq!(__private::run_no_init(0), 0);

        load(b"min=20");
        assert_eq!(etherws_init(6), 0);
        let frame = super::hex(&[super::DST, super::SRC, "0800", "000102"].concat());
        load(&frame);
        // Too short for min=20: drop.
        assert_eq!(etherws_filter(17, 0, 3, 0), -1);
        let mut long = frame.clone();
        long.extend([9u8; 10]);
        load(&long);
        // Ingress: unchanged (verdict 0).
        assert_eq!(etherws_filter(27, 0, 3, 0), 0);
        assert_eq!(read(27), long);
        // Egress on a TAP port: tagged with VID 3.
        assert_eq!(etherws_filter(27, 1, 3, 0), 31);
        let want = super::hex(&[super::DST, super::SRC, "81000003", "0800", "000102"].concat());
        assert_eq!(&read(31)[..21], &want[..]);
        // Egress on a link: unchanged.
        load(&long);
        assert_eq!(etherws_filter(27, 1, 3, 1), 0);
        // Bad arguments are faults (a verdict out of bounds).
        assert_eq!(etherws_filter(27, 2, 3, 0), -2);
        assert_eq!(etherws_filter(13, 0, 3, 0), -2);
        assert_eq!(etherws_filter(CAPACITY as i32 + 1, 0, 3, 0), -2);
        assert_eq!(etherws_filter(CAPACITY as i32, 0, 3, 0), 0);
        // A full buffer cannot take a tag: the filter leaves it unchanged.
        assert_eq!(etherws_filter(CAPACITY as i32, 1, 3, 0), 0);
    }
}
