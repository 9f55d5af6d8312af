//! The call context ([`Ctx`]), the verdict, and [`Scope`].

use crate::abi;
use crate::code;

/// Where the frame is in the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Entering the node from a port, before switching.
    Ingress,
    /// Leaving the node through a port, after switching.
    Egress,
}

impl Direction {
    /// From the ABI number (`0` ingress, `1` egress).
    pub fn from_raw(raw: i32) -> Option<Direction> {
        match raw {
            abi::DIRECTION_INGRESS => Some(Direction::Ingress),
            abi::DIRECTION_EGRESS => Some(Direction::Egress),
            _ => None,
        }
    }

    /// The ABI number.
    pub fn to_raw(self) -> i32 {
        match self {
            Direction::Ingress => abi::DIRECTION_INGRESS,
            Direction::Egress => abi::DIRECTION_EGRESS,
        }
    }

    /// `"ingress"` or `"egress"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
}

/// What kind of port the frame is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PortKind {
    /// A TAP device (`0`).
    Tap,
    /// A transport link (`1`).
    Link,
    /// A number this SDK does not know.
    Other(i32),
}

impl PortKind {
    /// From the ABI number.
    pub fn from_raw(raw: i32) -> PortKind {
        match raw {
            abi::PORT_KIND_TAP => PortKind::Tap,
            abi::PORT_KIND_LINK => PortKind::Link,
            other => PortKind::Other(other),
        }
    }

    /// The ABI number.
    pub fn to_raw(self) -> i32 {
        match self {
            PortKind::Tap => abi::PORT_KIND_TAP,
            PortKind::Link => abi::PORT_KIND_LINK,
            PortKind::Other(raw) => raw,
        }
    }

    /// `"tap"`, `"link"` or `"other"`.
    pub fn as_str(self) -> &'static str {
        match self {
            PortKind::Tap => "tap",
            PortKind::Link => "link",
            PortKind::Other(_) => "other",
        }
    }
}

/// The context of one `etherws_filter` call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ctx {
    /// Ingress or egress.
    pub direction: Direction,
    /// The port id (node-local, never reused in a process's life).
    pub port: u32,
    /// The kind of that port.
    pub port_kind: PortKind,
}

/// What to do with the frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Drop it.
    Drop,
    /// Pass the frame as it now is: its current
    /// [`len`](crate::Frame::len), with any changes made through the
    /// [`Frame`](crate::Frame). The SDK returns the ABI's "pass unchanged"
    /// (`0`) when the frame was not [modified](crate::Frame::is_modified),
    /// else the length.
    Pass,
}

/// Which calls a filter acts on, from the optional configuration keys
/// `direction=ingress|egress|both` and `port_kind=tap|link|any`
/// (defaults: both, any). Frames outside the scope pass untouched.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Scope {
    /// `None`: both directions.
    pub direction: Option<Direction>,
    /// `None`: any kind of port.
    pub port_kind: Option<PortKind>,
}

impl Scope {
    /// Every call.
    pub const ALL: Scope = Scope {
        direction: None,
        port_kind: None,
    };

    /// Whether a call with this context is in scope.
    #[inline]
    pub fn matches(&self, ctx: &Ctx) -> bool {
        self.direction.is_none_or(|d| d == ctx.direction)
            && self.port_kind.is_none_or(|k| k == ctx.port_kind)
    }

    /// Takes a `direction` or `port_kind` key: `Ok(true)` when `key` was
    /// one of them (and its value was good), `Ok(false)` when it is another
    /// key, `Err(code::BAD_VALUE)` on a bad value.
    pub fn parse_key(&mut self, key: &str, value: &str) -> Result<bool, i32> {
        match key {
            "direction" => {
                self.direction = match value {
                    "ingress" => Some(Direction::Ingress),
                    "egress" => Some(Direction::Egress),
                    "both" => None,
                    _ => return Err(code::BAD_VALUE),
                };
                Ok(true)
            }
            "port_kind" => {
                self.port_kind = match value {
                    "tap" => Some(PortKind::Tap),
                    "link" => Some(PortKind::Link),
                    "any" => None,
                    _ => return Err(code::BAD_VALUE),
                };
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}
