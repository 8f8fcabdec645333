//! The notification endpoints: push registration, the in-app list (unread first), mark read,
//! live delivery over a WebSocket, preferences, the admin view of deliveries and Twilio's status
//! callback (signature verified).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use data_encoding::BASE64URL_NOPAD;
use hearth_notify::{Category, ChannelKind};
use hearth_store_sql::notify::{self as sql, InboxRow, OutboxRow, SettingsRow, SubscriptionRow};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::Notifications;
use hearth_workflow::error::ApiError;
use hearth_workflow::openapi::ErrorEnvelope;
use hearth_workflow::{ApiCaller, require_admin};

#[derive(utoipa::OpenApi)]
#[openapi(paths(
    register,
    vapid_public_key,
    list,
    mark_read,
    live,
    get_preferences,
    put_preferences,
    admin_list,
    twilio_status
))]
pub(crate) struct Api;

pub(crate) fn router() -> axum::Router<Arc<Notifications>> {
    axum::Router::new()
        .route("/api/push/register", post(register))
        .route("/api/push/vapid-public-key", get(vapid_public_key))
        .route("/api/v1/notifications", get(list))
        .route("/api/v1/notifications/{id}/read", post(mark_read))
        .route("/api/v1/notifications/ws", get(live))
        .route("/api/v1/notifications/preferences", get(get_preferences).put(put_preferences))
        .route("/api/v1/admin/notifications", get(admin_list))
        .route("/api/v1/notifications/twilio/status", post(twilio_status))
}

fn bad(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, code, message)
}

/// A JSON object body. Only an object: serde would read a struct from an array too, so that
/// `[null, null]` filled the fields in order.
fn parse_body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(bad("invalid_body", "the request body must be a JSON object"));
    }
    serde_json::from_slice(bytes).map_err(|e| bad("invalid_body", format!("invalid request body: {e}")))
}

fn millis(ms: i64) -> Option<String> {
    chrono::DateTime::from_timestamp_millis(ms).map(|t| t.to_rfc3339())
}

/// A Web Push subscription's keys (`PushSubscription.toJSON().keys`).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct PushKeys {
    /// The browser's P-256 public key, base64url.
    p256dh: String,
    /// The 16-byte authentication secret, base64url.
    auth: String,
}

/// A device to push to: a browser's `PushSubscription` (Web Push) or an FCM registration token.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"kind": "webpush", "endpoint": "https://push.example.net/wpush/v2/abc", "keys": {"p256dh": "BCVx…", "auth": "BTBZ…"}}))]
struct RegisterBody {
    /// `webpush` (default) or `fcm`.
    #[serde(default)]
    kind: Option<String>,
    /// Web Push: the subscription's endpoint (`PushSubscription.endpoint`).
    endpoint: Option<String>,
    keys: Option<PushKeys>,
    /// FCM: the registration token.
    token: Option<String>,
    /// Sent by browsers; ignored.
    #[serde(rename = "expirationTime", default)]
    _expiration_time: Option<Value>,
}

/// A registered device.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Registered {
    /// The subscription's id.
    id: String,
    /// `webpush` or `fcm`.
    #[schema(example = "webpush")]
    kind: String,
}

/// The server's VAPID public key.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct VapidKey {
    /// Uncompressed P-256 point, base64url: the `applicationServerKey` of `PushManager.subscribe`.
    #[serde(rename = "publicKey")]
    public_key: String,
}

/// An in-app notification.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct InboxItem {
    id: String,
    /// `appointment`, `result`, `announcement`, `security`, …
    #[schema(example = "appointment")]
    category: String,
    /// In the recipient's language.
    title: String,
    body: String,
    created_at: Option<String>,
    read: bool,
    read_at: Option<String>,
}

/// The caller's in-app notifications.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Inbox {
    /// Unread first, newest first.
    notifications: Vec<InboxItem>,
    /// How many are unread in all.
    unread: i64,
}

fn b64url(s: &str) -> Option<Vec<u8>> {
    BASE64URL_NOPAD.decode(s.trim_end_matches('=').as_bytes()).ok()
}

#[utoipa::path(post, path = "/api/push/register", tag = "notifications", security(("bearer" = [])),
    request_body(content = RegisterBody, description = "A browser PushSubscription (Web Push) or an FCM registration token",
        example = json!({"kind": "webpush", "endpoint": "https://push.example.net/wpush/v2/abc", "keys": {"p256dh": "BCVx…", "auth": "BTBZ…"}})),
    responses((status = 201, description = "Registered (an endpoint registered again moves to this account)", body = Registered, example = json!({"id": "0190…", "kind": "webpush"})),
        (status = 400, description = "Invalid subscription (stable error code)", body = ErrorEnvelope, example = json!({"error": {"code": "invalid_subscription", "message": "…"}})),
        (status = 401, description = "No valid token", body = ErrorEnvelope)))]
pub(crate) async fn register(
    State(app): State<Arc<Notifications>>,
    ApiCaller(caller): ApiCaller,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let body: RegisterBody = parse_body(&bytes)?;
    let invalid = |m: &str| bad("invalid_subscription", m.to_owned());
    let kind = body.kind.as_deref().unwrap_or("webpush");
    let (endpoint, p256dh, auth) = match kind {
        "webpush" => {
            let endpoint = body.endpoint.ok_or_else(|| invalid("endpoint is required"))?;
            if !hearth_notify::channel::endpoint_allowed(&endpoint, app.notifier.config.allow_insecure_push_endpoints) {
                return Err(invalid("endpoint must be an https URL of at most 2048 characters"));
            }
            let keys = body.keys.ok_or_else(|| invalid("keys.p256dh and keys.auth are required"))?;
            let point = b64url(&keys.p256dh).ok_or_else(|| invalid("keys.p256dh is not base64url"))?;
            if point.len() != 65 || point.first() != Some(&4) {
                return Err(invalid("keys.p256dh is not an uncompressed P-256 public key"));
            }
            if hearth_notify::webpush::encrypt(b"probe", &point, &[0; 16]).is_err() {
                return Err(invalid("keys.p256dh is not a point on P-256"));
            }
            if b64url(&keys.auth).map(|a| a.len()) != Some(16) {
                return Err(invalid("keys.auth must be 16 bytes, base64url"));
            }
            (endpoint, Some(keys.p256dh), Some(keys.auth))
        }
        "fcm" => {
            let token = body.token.ok_or_else(|| invalid("token is required"))?;
            if token.is_empty() || token.len() > 4096 || !token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(invalid("token must be 1 to 4096 printable ASCII characters"));
            }
            (token, None, None)
        }
        _ => return Err(invalid("kind must be webpush or fcm")),
    };
    let row = SubscriptionRow {
        id: uuid::Uuid::now_v7().to_string(),
        account_id: caller.account.id.clone(),
        kind: kind.to_owned(),
        endpoint,
        p256dh,
        auth,
        created_at: app.clock.now().timestamp_millis(),
    };
    let stored = sql::subscription_upsert(&*app.db, &row).await?;
    Ok((StatusCode::CREATED, Json(Registered { id: stored.id, kind: stored.kind })).into_response())
}

#[utoipa::path(get, path = "/api/push/vapid-public-key", tag = "notifications",
    responses((status = 200, description = "The VAPID public key for PushManager.subscribe (applicationServerKey)", body = VapidKey, example = json!({"publicKey": "BP4z…"}))))]
pub(crate) async fn vapid_public_key(State(app): State<Arc<Notifications>>) -> Json<VapidKey> {
    Json(VapidKey { public_key: app.notifier.vapid_public_key.clone() })
}

fn inbox_json(r: &InboxRow) -> InboxItem {
    InboxItem {
        id: r.id.clone(),
        category: r.category.clone(),
        title: r.title.clone(),
        body: r.body.clone(),
        created_at: millis(r.created_at),
        read: r.read_at.is_some(),
        read_at: r.read_at.and_then(millis),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    #[serde(default)]
    unread: Option<bool>,
    #[serde(default)]
    limit: Option<i64>,
}

fn limit(l: Option<i64>) -> Result<i64, ApiError> {
    match l {
        None => Ok(50),
        Some(n) if (1..=500).contains(&n) => Ok(n),
        Some(_) => Err(bad("invalid_query", "limit must be between 1 and 500")),
    }
}

fn query<T: serde::de::DeserializeOwned>(uri: &axum::http::Uri) -> Result<T, ApiError> {
    serde_urlencoded_like(uri.query().unwrap_or(""))
}

/// Query strings through `form_urlencoded` into a JSON object (values typed by the target).
fn serde_urlencoded_like<T: serde::de::DeserializeOwned>(q: &str) -> Result<T, ApiError> {
    let mut map = Map::new();
    for (k, v) in form_urlencoded::parse(q.as_bytes()) {
        let value = match v.as_ref() {
            "true" => json!(true),
            "false" => json!(false),
            s => s.parse::<i64>().map_or_else(|_| json!(s), |n| json!(n)),
        };
        if map.insert(k.into_owned(), value).is_some() {
            return Err(bad("invalid_query", "a query parameter is repeated"));
        }
    }
    serde_json::from_value(Value::Object(map)).map_err(|e| bad("invalid_query", format!("invalid query: {e}")))
}

#[utoipa::path(get, path = "/api/v1/notifications", tag = "notifications", security(("bearer" = [])),
    params(("unread" = Option<bool>, Query, description = "Only unread ones"), ("limit" = Option<i64>, Query, description = "1 to 500, default 50")),
    responses((status = 200, description = "The caller's in-app notifications, unread first, newest first", body = Inbox,
        example = json!({"notifications": [{"id": "0190…", "category": "appointment", "title": "Appointment reminder", "body": "…", "created_at": "2026-01-01T10:00:00+00:00", "read": false, "read_at": null}], "unread": 1})),
        (status = 400, description = "Invalid query", body = ErrorEnvelope), (status = 401, description = "No valid token", body = ErrorEnvelope)))]
pub(crate) async fn list(
    State(app): State<Arc<Notifications>>,
    ApiCaller(caller): ApiCaller,
    uri: axum::http::Uri,
) -> Result<Json<Inbox>, ApiError> {
    let q: ListQuery = query(&uri)?;
    let rows = sql::inbox_list(&*app.db, &caller.account.id, q.unread.unwrap_or(false), limit(q.limit)?).await?;
    let unread = sql::inbox_unread_count(&*app.db, &caller.account.id).await?;
    Ok(Json(Inbox { notifications: rows.iter().map(inbox_json).collect(), unread }))
}

#[utoipa::path(post, path = "/api/v1/notifications/{id}/read", tag = "notifications", security(("bearer" = [])),
    params(("id" = String, Path, description = "The notification id")),
    responses((status = 204, description = "Marked read (idempotent)"),
        (status = 404, description = "No such notification of the caller", body = ErrorEnvelope, example = json!({"error": {"code": "not_found", "message": "no such notification"}})),
        (status = 401, description = "No valid token", body = ErrorEnvelope)))]
pub(crate) async fn mark_read(
    State(app): State<Arc<Notifications>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if sql::inbox_mark_read(&*app.db, &caller.account.id, &id, app.clock.now().timestamp_millis()).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such notification"))
    }
}

#[utoipa::path(get, path = "/api/v1/notifications/ws", tag = "notifications", security(("bearer" = [])),
    responses((status = 101, description = "WebSocket: the unread notifications, then each new one as it is delivered, as JSON text frames {\"type\":\"notification\",\"notification\":{…}}. The token comes as Authorization: Bearer, or (browsers) as the subprotocols `hearth.bearer, <token>`"),
        (status = 401, description = "No valid token", body = ErrorEnvelope),
        (status = 426, description = "Not a WebSocket upgrade request", body = ErrorEnvelope, example = json!({"error": {"code": "upgrade_required", "message": "…"}}))))]
pub(crate) async fn live(
    State(app): State<Arc<Notifications>>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    // Browsers cannot set headers on a WebSocket: they may offer the token as the second of the
    // subprotocols `hearth.bearer, <token>` (the answer names only `hearth.bearer`).
    let offered = headers.get("sec-websocket-protocol").and_then(|v| v.to_str().ok()).unwrap_or("");
    let mut protocols = offered.split(',').map(str::trim);
    let via_protocol = match (protocols.next(), protocols.next()) {
        (Some(BEARER_PROTOCOL), Some(token)) if !headers.contains_key(axum::http::header::AUTHORIZATION) => {
            Some(format!("Bearer {token}"))
        }
        _ => None,
    };
    let caller = match via_protocol {
        Some(value) => {
            let mut h = HeaderMap::new();
            let value = axum::http::HeaderValue::from_str(&value)
                .map_err(|_| bad("invalid_token", "the token is not a header value"))?;
            h.insert(axum::http::header::AUTHORIZATION, value);
            app.authenticate(&h, false).await
        }
        None => app.authenticate(&headers, false).await,
    }
    .map_err(ApiError::from)?;
    let upgrade = upgrade.map_err(|_| {
        ApiError::new(
            StatusCode::UPGRADE_REQUIRED,
            "upgrade_required",
            "this endpoint is a WebSocket (GET with Upgrade: websocket)",
        )
    })?;
    let account = caller.account.id.clone();
    Ok(upgrade.protocols([BEARER_PROTOCOL]).on_upgrade(move |socket| stream(app, account, socket)))
}

/// The WebSocket subprotocol that carries a bearer token (see [`live`]).
const BEARER_PROTOCOL: &str = "hearth.bearer";

/// Sends the unread notifications not sent yet on this socket; false when the socket is gone.
async fn push_unread(app: &Notifications, account: &str, sent: &mut HashSet<String>, socket: &mut WebSocket) -> bool {
    let Ok(rows) = sql::inbox_list(&*app.db, account, true, 500).await else { return true };
    for r in rows.iter().rev() {
        if sent.insert(r.id.clone()) {
            let frame = json!({"type": "notification", "notification": inbox_json(r)}).to_string();
            if socket.send(Message::Text(frame.into())).await.is_err() {
                return false;
            }
        }
    }
    true
}

/// Live delivery: woken by this process's in-app deliveries, and every two seconds for those of
/// workers in other processes.
async fn stream(app: Arc<Notifications>, account: String, mut socket: WebSocket) {
    let mut live = app.notifier.live.subscribe();
    let mut sent = HashSet::new();
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        if !push_unread(&app, &account, &mut sent, &mut socket).await {
            return;
        }
        tokio::select! {
            msg = live.recv() => match msg {
                Ok((who, _)) if who != account => continue,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
            _ = tick.tick() => {}
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

fn minutes_text(m: i64) -> String {
    format!("{:02}:{:02}", m / 60, m % 60)
}

/// A recipient's notification preferences.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Preferences {
    /// IANA time zone that dates and times in messages are shown in.
    #[schema(example = "Asia/Kolkata")]
    time_zone: String,
    /// `en` or `hi`.
    #[schema(example = "hi")]
    language: String,
    /// No messages but critical ones between `start` and `end` (local time); `null`: none.
    quiet_hours: Option<QuietHours>,
    /// Category → channel (`email`, `sms`, `webpush`, `fcm`, `in_app`) → on/off; defaults filled in.
    channels: std::collections::BTreeMap<String, std::collections::BTreeMap<String, bool>>,
    /// Categories sent whatever the switches and quiet hours say.
    critical: Vec<&'static str>,
}

/// Quiet hours, `HH:MM` local time.
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct QuietHours {
    #[schema(example = "22:00")]
    start: String,
    #[schema(example = "07:00")]
    end: String,
}

async fn preferences_json(app: &Notifications, account: &str) -> Result<Preferences, ApiError> {
    let stored = sql::preferences(&*app.db, account).await?;
    let row = sql::settings(&*app.db, account).await?;
    let s = app.notifier.with_defaults(row.as_ref());
    let mut channels = std::collections::BTreeMap::new();
    for c in Category::ALL {
        let mut per = std::collections::BTreeMap::new();
        for ch in ChannelKind::ALL {
            let on = stored
                .iter()
                .find(|(cat, k, _)| cat == c.as_str() && k == ch.as_str())
                .map_or_else(|| super::default_enabled(c, ch), |(_, _, e)| *e);
            per.insert(ch.as_str().to_owned(), on);
        }
        channels.insert(c.as_str().to_owned(), per);
    }
    let quiet = row
        .as_ref()
        .and_then(|r| r.quiet_start.zip(r.quiet_end))
        .map(|(a, b)| QuietHours { start: minutes_text(a), end: minutes_text(b) });
    Ok(Preferences {
        time_zone: s.time_zone.name().to_owned(),
        language: s.language.as_str().to_owned(),
        quiet_hours: quiet,
        channels,
        critical: Category::ALL.iter().filter(|c| c.is_critical()).map(|c| c.as_str()).collect(),
    })
}

#[utoipa::path(get, path = "/api/v1/notifications/preferences", tag = "notifications", security(("bearer" = [])),
    responses((status = 200, description = "Per category × channel switches (defaults filled in), time zone, language, quiet hours", body = Preferences,
        example = json!({"time_zone": "Asia/Kolkata", "language": "hi", "quiet_hours": {"start": "22:00", "end": "07:00"}, "channels": {"appointment": {"email": true, "sms": true, "webpush": true, "fcm": true, "in_app": true}}, "critical": ["security", "emergency"]})),
        (status = 401, description = "No valid token", body = ErrorEnvelope)))]
pub(crate) async fn get_preferences(
    State(app): State<Arc<Notifications>>,
    ApiCaller(caller): ApiCaller,
) -> Result<Json<Preferences>, ApiError> {
    Ok(Json(preferences_json(&app, &caller.account.id).await?))
}

type QuietBody = QuietHours;

/// Preferences to change; what is left out stays as it is.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"time_zone": "Asia/Kolkata", "quiet_hours": {"start": "22:00", "end": "07:00"}, "channels": {"announcement": {"email": false}}}))]
struct PreferencesBody {
    /// IANA time zone, such as `Asia/Kolkata`.
    time_zone: Option<String>,
    /// `en` or `hi`.
    language: Option<String>,
    /// `null` turns quiet hours off.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<QuietHours>)]
    quiet_hours: Option<Option<QuietBody>>,
    /// Category → channel → on/off (critical categories cannot be turned off).
    #[serde(default)]
    #[schema(value_type = Option<std::collections::BTreeMap<String, std::collections::BTreeMap<String, bool>>>)]
    channels: Option<Map<String, Value>>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<QuietBody>>, D::Error> {
    Option::<QuietBody>::deserialize(d).map(Some)
}

#[utoipa::path(put, path = "/api/v1/notifications/preferences", tag = "notifications", security(("bearer" = [])),
    request_body(content = PreferencesBody, description = "Any subset: time_zone (IANA), language (en, hi), quiet_hours ({start, end} HH:MM or null), channels {category: {channel: bool}}",
        example = json!({"time_zone": "Asia/Kolkata", "quiet_hours": {"start": "22:00", "end": "07:00"}, "channels": {"announcement": {"email": false}}})),
    responses((status = 200, description = "The preferences now in force", body = Preferences),
        (status = 400, description = "Unknown category, channel, time zone or language, or a bad time (stable error code)", body = ErrorEnvelope, example = json!({"error": {"code": "invalid_preferences", "message": "unknown time zone"}})),
        (status = 401, description = "No valid token", body = ErrorEnvelope)))]
pub(crate) async fn put_preferences(
    State(app): State<Arc<Notifications>>,
    ApiCaller(caller): ApiCaller,
    bytes: axum::body::Bytes,
) -> Result<Json<Preferences>, ApiError> {
    let body: PreferencesBody = parse_body(&bytes)?;
    let invalid = |m: String| bad("invalid_preferences", m);
    let account = caller.account.id.clone();
    let current = sql::settings(&*app.db, &account).await?;
    let defaults = app.notifier.with_defaults(current.as_ref());
    let mut settings = current.clone().unwrap_or(SettingsRow {
        time_zone: defaults.time_zone.name().to_owned(),
        language: defaults.language.as_str().to_owned(),
        quiet_start: None,
        quiet_end: None,
    });
    if let Some(tz) = body.time_zone {
        if tz.parse::<chrono_tz::Tz>().is_err() {
            return Err(invalid(format!("unknown time zone `{tz}` (use an IANA name such as Asia/Kolkata)")));
        }
        settings.time_zone = tz;
    }
    if let Some(lang) = body.language {
        if !matches!(lang.as_str(), "en" | "hi") {
            return Err(invalid("language must be en or hi".into()));
        }
        settings.language = lang;
    }
    if let Some(q) = body.quiet_hours {
        match q {
            None => (settings.quiet_start, settings.quiet_end) = (None, None),
            Some(q) => {
                let (Some(s), Some(e)) =
                    (hearth_notify::quiet::minutes(&q.start), hearth_notify::quiet::minutes(&q.end))
                else {
                    return Err(invalid("quiet_hours start and end must be HH:MM".into()));
                };
                (settings.quiet_start, settings.quiet_end) = (Some(i64::from(s)), Some(i64::from(e)));
            }
        }
    }
    let mut switches = Vec::new();
    for (cat, per) in body.channels.unwrap_or_default() {
        let category = Category::parse(&cat).ok_or_else(|| invalid(format!("unknown category `{cat}`")))?;
        let Value::Object(per) = per else { return Err(invalid(format!("channels.{cat} must be an object"))) };
        for (ch, on) in per {
            let channel = ChannelKind::parse(&ch).ok_or_else(|| invalid(format!("unknown channel `{ch}`")))?;
            let on = on.as_bool().ok_or_else(|| invalid(format!("channels.{cat}.{ch} must be true or false")))?;
            if category.is_critical() && channel == ChannelKind::InApp && !on {
                return Err(invalid(format!("{cat} notifications always reach the app")));
            }
            switches.push((category, channel, on));
        }
    }
    let tx = sql::TxDb::begin(&*app.db).await?;
    if current.as_ref() != Some(&settings) {
        sql::set_settings(&tx, &account, &settings).await?;
    }
    for (c, ch, on) in switches {
        sql::set_preference(&tx, &account, c.as_str(), ch.as_str(), on).await?;
    }
    tx.commit().await?;
    Ok(Json(preferences_json(&app, &account).await?))
}

/// A delivery in the outbox, for administrators: no address and no message content.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Delivery {
    id: String,
    /// Its idempotency key (one delivery per key).
    key: String,
    account_id: Option<String>,
    /// `email`, `sms`, `webpush`, `fcm` or `in_app`.
    #[schema(example = "sms")]
    channel: String,
    category: String,
    template: String,
    /// `queued`, `sending`, `sent`, `delivered`, `failed`, `bounced` or `cancelled`.
    #[schema(example = "failed")]
    status: String,
    attempts: i64,
    max_attempts: i64,
    /// Not sent before (RFC 3339).
    not_before: Option<String>,
    provider: Option<String>,
    provider_id: Option<String>,
    last_error: Option<String>,
    created_at: Option<String>,
    updated_at: Option<String>,
    /// Every attempt, oldest first.
    attempt_log: Vec<DeliveryAttempt>,
}

/// One attempt to deliver.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct DeliveryAttempt {
    attempt: i64,
    worker: String,
    status: String,
    provider_id: Option<String>,
    error: Option<String>,
    started_at: Option<String>,
    finished_at: Option<String>,
}

/// Deliveries, newest first.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Deliveries {
    notifications: Vec<Delivery>,
}

fn admin_json(r: &OutboxRow, attempts: &[sql::AttemptRow]) -> Delivery {
    Delivery {
        id: r.id.clone(),
        key: r.idem_key.clone(),
        account_id: r.account_id.clone(),
        channel: r.channel.clone(),
        category: r.category.clone(),
        template: r.template.clone(),
        status: r.status.clone(),
        attempts: r.attempts,
        max_attempts: r.max_attempts,
        not_before: millis(r.not_before),
        provider: r.provider.clone(),
        provider_id: r.provider_id.clone(),
        last_error: r.last_error.clone(),
        created_at: millis(r.created_at),
        updated_at: millis(r.updated_at),
        attempt_log: attempts
            .iter()
            .map(|a| DeliveryAttempt {
                attempt: a.attempt,
                worker: a.worker.clone(),
                status: a.status.clone(),
                provider_id: a.provider_id.clone(),
                error: a.error.clone(),
                started_at: millis(a.started_at),
                finished_at: a.finished_at.and_then(millis),
            })
            .collect(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminQuery {
    status: Option<String>,
    limit: Option<i64>,
}

const STATUSES: [&str; 7] = ["queued", "sending", "sent", "delivered", "failed", "bounced", "cancelled"];

#[utoipa::path(get, path = "/api/v1/admin/notifications", tag = "notifications", security(("bearer" = [])),
    params(("status" = Option<String>, Query, description = "queued, sending, sent, delivered, failed, bounced or cancelled"), ("limit" = Option<i64>, Query, description = "1 to 500, default 50")),
    responses((status = 200, description = "Deliveries with their attempts (no addresses, no message content)", body = Deliveries,
        example = json!({"notifications": [{"id": "0190…", "channel": "sms", "status": "failed", "attempts": 8, "last_error": "gave up after 8 attempts: HTTP 500", "attempt_log": []}]})),
        (status = 400, description = "Unknown status", body = ErrorEnvelope), (status = 401, description = "No valid token", body = ErrorEnvelope),
        (status = 403, description = "Not an administrator", body = ErrorEnvelope)))]
pub(crate) async fn admin_list(
    State(app): State<Arc<Notifications>>,
    ApiCaller(caller): ApiCaller,
    uri: axum::http::Uri,
) -> Result<Json<Deliveries>, ApiError> {
    require_admin(&caller)?;
    let q: AdminQuery = query(&uri)?;
    if let Some(s) = &q.status
        && !STATUSES.contains(&s.as_str())
    {
        return Err(bad("invalid_query", format!("status must be one of {}", STATUSES.join(", "))));
    }
    let rows = sql::list_by_status(&*app.db, q.status.as_deref(), limit(q.limit)?).await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        out.push(admin_json(r, &sql::attempts(&*app.db, &r.id).await?));
    }
    Ok(Json(Deliveries { notifications: out }))
}

#[utoipa::path(post, path = "/api/v1/notifications/twilio/status", tag = "notifications",
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "Twilio's message status callback (MessageSid, MessageStatus, ErrorCode)"),
    responses((status = 204, description = "Recorded (or an intermediate status ignored)"),
        (status = 403, description = "X-Twilio-Signature missing or wrong", body = ErrorEnvelope, example = json!({"error": {"code": "invalid_signature", "message": "…"}})),
        (status = 404, description = "SMS is not configured with Twilio status callbacks", body = ErrorEnvelope)))]
pub(crate) async fn twilio_status(
    State(app): State<Arc<Notifications>>,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> Result<StatusCode, ApiError> {
    let Some((token, url)) = app
        .notifier
        .config
        .sms
        .as_ref()
        .and_then(|s| s.status_callback_url.as_ref().map(|u| (s.auth_token.expose().clone(), u.clone())))
    else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", "Twilio status callbacks are not configured"));
    };
    let params: Vec<(String, String)> =
        form_urlencoded::parse(&bytes).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    let signature = headers.get("x-twilio-signature").and_then(|v| v.to_str().ok()).unwrap_or("");
    if !hearth_notify::twilio::verify(&token, &url, &params, signature) {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "invalid_signature", "the request signature does not verify"));
    }
    let get = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let (Some(sid), Some(status)) = (get("MessageSid"), get("MessageStatus")) else {
        return Err(bad("invalid_body", "MessageSid and MessageStatus are required"));
    };
    if let Some(ours) = hearth_notify::twilio::delivery_status(status) {
        let error = get("ErrorCode").filter(|c| !c.is_empty()).map(|c| format!("Twilio error {c}"));
        let changed =
            sql::provider_status(&*app.db, "sms", sid, ours, error.as_deref(), app.clock.now().timestamp_millis())
                .await?;
        tracing::info!(status = ours, changed, "Twilio delivery report");
    }
    Ok(StatusCode::NO_CONTENT)
}
