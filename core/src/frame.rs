//! The unit that moves through a node: frame bytes plus per-frame metadata.

use bytes::Bytes;

/// One Ethernet frame (destination MAC first, no FCS).
///
/// The bytes are reference-counted ([`Bytes`]), so flooding a frame to many
/// ports clones a pointer, not the payload, and a WebSocket message's buffer
/// becomes the frame without a copy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frame {
    data: Bytes,
    /// Per-frame metadata: offload information (virtio-net header: GSO type
    /// and size, checksum offsets).
    pub meta: FrameMeta,
}

/// Metadata that travels with a frame between ports of one node (never on
/// the wire unless a transport negotiates it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FrameMeta {
    /// Offload state (a TAP's virtio-net header): a super-frame to segment
    /// or a checksum to complete before the frame may leave through a port
    /// that cannot take it. `None`: a plain, complete frame.
    pub vnet: Option<crate::offload::VnetHdr>,
}

impl Frame {
    pub fn new(data: impl Into<Bytes>) -> Self {
        Frame {
            data: data.into(),
            meta: FrameMeta::default(),
        }
    }

    /// A frame with its offload header (`None`: plain).
    pub fn with_vnet(data: impl Into<Bytes>, vnet: Option<crate::offload::VnetHdr>) -> Self {
        Frame {
            data: data.into(),
            meta: FrameMeta { vnet },
        }
    }

    pub fn bytes(&self) -> &Bytes {
        &self.data
    }

    pub fn into_bytes(self) -> Bytes {
        self.data
    }

    /// Replaces the frame's bytes (a filter's rewrite).
    pub fn set_bytes(&mut self, data: impl Into<Bytes>) {
        self.data = data.into();
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

impl AsRef<[u8]> for Frame {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}
