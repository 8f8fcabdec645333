//! Hearth's notification channels and the pure parts of notifications: the [`Channel`] trait
//! and its implementations (SMTP e-mail, Twilio SMS, Web Push, FCM HTTP v1, the local file
//! outbox, memory), Web Push encryption (RFC 8291) and VAPID (RFC 8292), the FCM service-account
//! JWT, Twilio request signatures, the Fluent templates (English, Hindi) and quiet hours.
//!
//! No storage and no HTTP server: the outbox rows live in `hearth-store-sql::notify`, the worker,
//! routes and preferences in `hearth-server::notify`.

#![forbid(unsafe_code)]

pub mod channel;
pub mod fcm;
pub mod http;
pub mod quiet;
pub mod templates;
pub mod twilio;
pub mod webpush;

pub use channel::{
    Accepted, Address, Category, Channel, ChannelKind, MemoryChannel, MemoryMessage, Outgoing, SendError,
};
pub use templates::{Lang, Rendered, Templates};
