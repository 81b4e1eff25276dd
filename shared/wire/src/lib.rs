//! The wire protocol without I/O: the messages of each channel, the frame
//! codec, the login proof, the heartbeat pacer and UDP datagram framing.
//! Nothing here touches a socket, so all of it is tested and fuzzed on bytes.

pub mod auth;
pub mod caps;
pub mod codec;
pub mod compat;
pub mod heartbeat;
pub mod message;
pub mod stun;
pub mod udp;
