//! The types of the policy seam: what a hook is asked and what it answers, shared by
//! the broker (`wasmq`) and the plugin host (`wasmq-plugin-host`).
//!
//! One definition of each, in the codec's types (`ByteString`, `Publish`), so that a
//! hook call is converted once: at the WIT edge, in the plugin host's bindings, and
//! nowhere between the broker and the host.
//!
//! # Map
//!
//! - [`client`]: who is asking: [`ClientInfo`] (made once per connection by the
//!   handshake), with its [`ListenerKind`], its [`CertificateIdentity`] and the
//!   [`Prepared`] slot where the plugin host keeps the client as plugins are handed it.
//! - [`answer`]: what is asked and answered about a topic: [`Action`], [`Decision`],
//!   and for how long an answer may be kept, [`CacheLifetime`].
//! - [`transform`]: what a transform did to a message: [`Transformed`] (one message)
//!   and [`Edit`] (one message of a batch, as narrow as the change).
//!
//! What differs between the two sides stays on its side: the broker's answer to an
//! enhanced authentication step (after its fallbacks) and a plugin's raw one, the
//! broker's MQTT limits and a plugin's resource limits.

pub mod answer;
pub mod client;
pub mod transform;

pub use answer::{Action, CacheLifetime, Decision};
pub use client::{CertificateIdentity, ClientInfo, ListenerKind, Prepared};
pub use transform::{Edit, Transformed};
