//! The signaling hub of one process: who is in which room, and the relay between them.
//!
//! A room's members are its participants present now (connected, or dropped and inside the
//! reconnect grace). Each connected member has one bounded queue its socket task drains (a
//! receiver that falls [`QUEUE`] messages behind is cut off, as if its socket dropped, rather
//! than let memory grow or messages be lost in the middle of a negotiation); everything a
//! member sends is handled under the hub's lock and pushed onto the receivers' channels in the
//! order it arrived, so each receiver sees each sender's messages in order (and `seq` numbers
//! them per sender, which is what perfect negotiation needs: an offer never overtakes the
//! candidates that belong to it). The lock is a plain mutex never held across an `await`.
//!
//! The hub is pure bookkeeping (no I/O, no clock): the socket task in `ws.rs` feeds it frames,
//! writes what comes out of the channel, starts the grace timer and writes the audit events for
//! the joins and leaves the hub reports.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde_json::{Value, json};
use tokio::sync::mpsc::{Receiver, Sender, channel};

use crate::Part;

/// A mesh: every participant sends media to every other, so beyond four the uplinks of a home
/// connection give out. The fifth is refused (close code [`CLOSE_FULL`]).
pub const MESH_LIMIT: usize = 4;
/// Close code: the room already holds [`MESH_LIMIT`] participants.
pub const CLOSE_FULL: u16 = 4409;
/// Close code: the care team declined this participant (from the lobby, or earlier).
pub const CLOSE_DECLINED: u16 = 4403;
/// Close code: the same participant connected again; this older socket is closed.
pub const CLOSE_REPLACED: u16 = 4000;
/// Messages queued for one socket before it counts as stalled and is cut off.
pub const QUEUE: usize = 256;
/// Longest chat message (characters).
pub const MAX_CHAT: usize = 2000;
/// Longest "running late" notice (minutes).
pub const MAX_LATE_MINUTES: u64 = 240;

/// What a socket task writes to its client.
#[derive(Debug, Clone, PartialEq)]
pub enum Out {
    Frame(Value),
    Close(u16, &'static str),
}

/// A participant who left the room for good (to audit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Left {
    pub participant: String,
    pub account: String,
    pub part: Part,
    /// `left`, `timed_out` (the grace passed), `declined`.
    pub how: &'static str,
}

/// A member's connection as [`Hub::join`] answers it.
#[derive(Debug)]
pub struct Joined {
    /// Names this connection (a newer one of the same participant replaces it).
    pub epoch: u64,
    pub rx: Receiver<Out>,
    /// The participant was already present (reconnect within the grace, or a second tab).
    pub resumed: bool,
}

/// Why [`Hub::join`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Full,
    Declined,
}

/// A refusal of one client message; the socket stays open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: &'static str,
    pub message: String,
}

/// Sets `key` on a JSON object (anything else is left as it is).
fn set(v: &mut Value, key: &str, value: Value) {
    if let Some(o) = v.as_object_mut() {
        o.insert(key.to_owned(), value);
    }
}

fn reply(code: &'static str, message: impl Into<String>) -> Reply {
    Reply { code, message: message.into() }
}

struct Member {
    part: Part,
    account: String,
    admitted: bool,
    muted: bool,
    camera: bool,
    hand: bool,
    /// The epoch of the latest connection, and its channel while it is connected.
    epoch: u64,
    conn: Option<Sender<Out>>,
    /// A message did not fit in the queue: the connection is cut at the end of this turn.
    stalled: Cell<bool>,
    /// Messages this member sent that were relayed (numbered per sender).
    seq: u64,
}

impl Member {
    fn send(&self, v: Value) {
        if let Some(tx) = &self.conn
            && tx.try_send(Out::Frame(v)).is_err()
        {
            self.stalled.set(true);
        }
    }

    fn view(&self, id: &str) -> Value {
        json!({
            "participant": id,
            "role": self.part.as_str(),
            "status": if self.admitted { "admitted" } else { "waiting" },
            "muted": self.muted,
            "camera": self.camera,
            "hand": self.hand,
            "connected": self.conn.is_some(),
        })
    }
}

#[derive(Default)]
struct Room {
    members: BTreeMap<String, Member>,
    declined: BTreeSet<String>,
    late: Option<u64>,
    epochs: u64,
}

impl Room {
    fn views(&self, admitted: bool, except: &str) -> Vec<Value> {
        self.members
            .iter()
            .filter(|(id, m)| m.admitted == admitted && id.as_str() != except)
            .map(|(id, m)| m.view(id))
            .collect()
    }

    fn to_admitted_except(&self, except: &str, v: &Value) {
        for (id, m) in &self.members {
            if m.admitted && id != except {
                m.send(v.clone());
            }
        }
    }

    /// The care team's view of the lobby, to every connected member of the care team.
    fn lobby_changed(&self) {
        let v = json!({"type": "lobby", "waiting": self.views(false, "")});
        for m in self.members.values() {
            if m.part.care_team() {
                m.send(v.clone());
            }
        }
    }

    fn welcome(&self, id: &str, m: &Member) -> Value {
        let mut v = json!({
            "type": "welcome",
            "you": id,
            "role": m.part.as_str(),
            "status": if m.admitted { "admitted" } else { "waiting" },
            "participants": if m.admitted { self.views(true, id) } else { Vec::new() },
        });
        if m.part.care_team() {
            set(&mut v, "waiting", json!(self.views(false, "")));
        }
        if !m.admitted
            && let Some(minutes) = self.late
        {
            set(&mut v, "late", json!(minutes));
        }
        v
    }

    /// Cuts off the connections whose queue overflowed: their socket task finds its queue closed
    /// once drained and ends as a dropped socket (the participant may come back within the grace).
    fn cut_stalled(&mut self) {
        for m in self.members.values_mut() {
            if m.stalled.replace(false) {
                m.conn = None;
            }
        }
    }

    /// Removes `id` for good and tells the others.
    fn remove(&mut self, id: &str, how: &'static str) -> Option<Left> {
        let m = self.members.remove(id)?;
        if m.admitted {
            self.to_admitted_except(id, &json!({"type": "presence", "event": "left", "participant": id}));
        }
        self.lobby_changed();
        Some(Left { participant: id.to_owned(), account: m.account, part: m.part, how })
    }
}

/// Every room of this process.
#[derive(Default)]
pub struct Hub {
    rooms: Mutex<HashMap<String, Room>>,
}

impl Hub {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Room>> {
        self.rooms.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `participant` (an `account` playing `part`) connects to `room`. The care team is
    /// admitted at once; everyone else waits in the lobby until the care team admits them. A
    /// participant already present (dropped within the grace, or another tab) resumes: same
    /// status, the older socket closed.
    pub fn join(&self, room: &str, participant: &str, part: Part, account: &str) -> Result<Joined, Refused> {
        let mut rooms = self.lock();
        let r = rooms.entry(room.to_owned()).or_default();
        if r.declined.contains(participant) {
            return Err(Refused::Declined);
        }
        let resumed = r.members.contains_key(participant);
        if !resumed && r.members.len() >= MESH_LIMIT {
            return Err(Refused::Full);
        }
        r.epochs += 1;
        let epoch = r.epochs;
        let (tx, rx) = channel(QUEUE);
        let m = r.members.entry(participant.to_owned()).or_insert_with(|| Member {
            part,
            account: account.to_owned(),
            admitted: part.care_team(),
            muted: false,
            camera: true,
            hand: false,
            epoch,
            conn: None,
            stalled: Cell::new(false),
            seq: 0,
        });
        if let Some(old) = m.conn.take() {
            let _ = old.try_send(Out::Close(CLOSE_REPLACED, "replaced by a newer connection"));
        }
        m.epoch = epoch;
        m.conn = Some(tx);
        let admitted = m.admitted;
        let Some(m) = r.members.get(participant) else { return Err(Refused::Full) };
        m.send(r.welcome(participant, m));
        if admitted {
            let event = if resumed { "reconnected" } else { "joined" };
            r.to_admitted_except(
                participant,
                &json!({"type": "presence", "event": event, "participant": m.view(participant)}),
            );
        } else {
            r.lobby_changed();
        }
        r.cut_stalled();
        Ok(Joined { epoch, rx, resumed })
    }

    /// The socket of `epoch` dropped without leaving: the participant stays present (status kept)
    /// until [`Hub::expire`] after the grace, unless it reconnects first. False: a newer
    /// connection had replaced this one already (nothing to time out).
    pub fn disconnect(&self, room: &str, participant: &str, epoch: u64) -> bool {
        let mut rooms = self.lock();
        let Some(r) = rooms.get_mut(room) else { return false };
        let Some(m) = r.members.get_mut(participant) else { return false };
        if m.epoch != epoch {
            return false;
        }
        m.conn = None;
        if m.admitted {
            r.to_admitted_except(
                participant,
                &json!({"type": "presence", "event": "away", "participant": participant}),
            );
        } else {
            r.lobby_changed();
        }
        r.cut_stalled();
        true
    }

    /// The grace after the drop of `epoch` is over: if the participant has not reconnected, it
    /// has left.
    pub fn expire(&self, room: &str, participant: &str, epoch: u64) -> Option<Left> {
        let mut rooms = self.lock();
        let r = rooms.get_mut(room)?;
        let m = r.members.get(participant)?;
        if m.epoch != epoch || m.conn.is_some() {
            return None;
        }
        let left = r.remove(participant, "timed_out");
        r.cut_stalled();
        prune(&mut rooms, room);
        left
    }

    /// Participants present in `room` now, and the "running late" notice.
    pub fn snapshot(&self, room: &str) -> (Vec<Value>, Option<u64>) {
        let rooms = self.lock();
        match rooms.get(room) {
            Some(r) => (r.members.iter().map(|(id, m)| m.view(id)).collect(), r.late),
            None => (Vec::new(), None),
        }
    }

    /// One message of the connection `epoch` of `participant`. `Ok(Some(_))`: someone left for
    /// good (the sender by `leave`, or a participant the care team declined).
    pub fn handle(&self, room: &str, participant: &str, epoch: u64, msg: &Value) -> Result<Option<Left>, Reply> {
        let mut rooms = self.lock();
        let out = handle_in(&mut rooms, room, participant, epoch, msg);
        if let Some(r) = rooms.get_mut(room) {
            r.cut_stalled();
        }
        prune(&mut rooms, room);
        out
    }
}

/// Forgets a room nobody is in and that keeps nothing for later (no one declined, no late notice).
fn prune(rooms: &mut HashMap<String, Room>, room: &str) {
    if rooms.get(room).is_some_and(|r| r.members.is_empty() && r.declined.is_empty() && r.late.is_none()) {
        rooms.remove(room);
    }
}

fn handle_in(
    rooms: &mut HashMap<String, Room>,
    room: &str,
    participant: &str,
    epoch: u64,
    msg: &Value,
) -> Result<Option<Left>, Reply> {
    let r = rooms.get_mut(room).ok_or_else(|| reply("not_in_room", "this connection is no longer in the room"))?;
    let me = r
        .members
        .get_mut(participant)
        .ok_or_else(|| reply("not_in_room", "this connection is no longer in the room"))?;
    if me.epoch != epoch {
        return Err(reply("not_in_room", "a newer connection of this participant replaced this one"));
    }
    let kind = msg.get("type").and_then(Value::as_str).unwrap_or("");
    match kind {
        "ping" => {
            me.send(json!({"type": "pong"}));
            return Ok(None);
        }
        "leave" => return Ok(r.remove(participant, "left")),
        _ => {}
    }
    if !me.admitted {
        return Err(reply("not_admitted", "wait until the care team admits you"));
    }
    let care_team = me.part.care_team();
    match kind {
        "signal" => {
            let to = msg.get("to").and_then(Value::as_str).unwrap_or("");
            let data = msg.get("data").filter(|d| d.is_object()).cloned().ok_or_else(|| {
                reply("malformed_message", "a signal is {\"type\":\"signal\",\"to\":<participant>,\"data\":{…}}")
            })?;
            if to == participant {
                return Err(reply("unknown_participant", "a signal goes to another participant"));
            }
            me.seq += 1;
            let out = json!({"type": "signal", "from": participant, "seq": me.seq, "data": data});
            match r.members.get(to) {
                Some(peer) if peer.admitted && peer.conn.is_some() => peer.send(out),
                Some(_) => return Err(reply("peer_unavailable", format!("{to} is not connected to the call now"))),
                None => return Err(reply("unknown_participant", format!("no participant {to} in this room"))),
            }
        }
        "state" => {
            for (field, slot) in [("muted", &mut me.muted), ("camera", &mut me.camera), ("hand", &mut me.hand)] {
                match msg.get(field) {
                    None => {}
                    Some(Value::Bool(b)) => *slot = *b,
                    Some(_) => return Err(reply("malformed_message", format!("`{field}` is true or false"))),
                }
            }
            me.seq += 1;
            let mut out = me.view(participant);
            set(&mut out, "type", json!("state"));
            set(&mut out, "seq", json!(me.seq));
            r.to_admitted_except(participant, &out);
        }
        "chat" => {
            let text = msg.get("text").and_then(Value::as_str).unwrap_or("").trim();
            if text.is_empty() || text.chars().count() > MAX_CHAT {
                return Err(reply("invalid_chat", format!("a chat message is 1 to {MAX_CHAT} characters")));
            }
            me.seq += 1;
            let out = json!({"type": "chat", "from": participant, "seq": me.seq, "text": text});
            r.to_admitted_except("", &out);
        }
        "admit" | "decline" if !care_team => {
            return Err(reply("not_care_team", "only the care team admits or declines"));
        }
        "late" if !care_team => return Err(reply("not_care_team", "only the care team sends a late notice")),
        "admit" => {
            let who = msg.get("participant").and_then(Value::as_str).unwrap_or("");
            let target =
                r.members.get_mut(who).filter(|m| !m.admitted).ok_or_else(|| {
                    reply("unknown_participant", format!("no participant {who} is waiting in the lobby"))
                })?;
            target.admitted = true;
            let Some(target) = r.members.get(who) else { return Ok(None) };
            target.send(json!({"type": "admitted", "participants": r.views(true, who)}));
            r.to_admitted_except(who, &json!({"type": "presence", "event": "joined", "participant": target.view(who)}));
            r.lobby_changed();
        }
        "decline" => {
            let who = msg.get("participant").and_then(Value::as_str).unwrap_or("");
            let target =
                r.members.get(who).filter(|m| !m.admitted).ok_or_else(|| {
                    reply("unknown_participant", format!("no participant {who} is waiting in the lobby"))
                })?;
            if let Some(tx) = &target.conn {
                let _ = tx.try_send(Out::Frame(json!({"type": "declined"})));
                let _ = tx.try_send(Out::Close(CLOSE_DECLINED, "declined by the care team"));
            }
            r.declined.insert(who.to_owned());
            return Ok(r.remove(who, "declined"));
        }
        "late" => {
            let minutes = msg.get("minutes").and_then(Value::as_u64).filter(|m| (1..=MAX_LATE_MINUTES).contains(m));
            let minutes = minutes.ok_or_else(|| {
                reply("invalid_late", format!("`minutes` is a whole number from 1 to {MAX_LATE_MINUTES}"))
            })?;
            r.late = Some(minutes);
            let out = json!({"type": "late", "minutes": minutes, "from": participant});
            for m in r.members.values().filter(|m| !m.admitted) {
                m.send(out.clone());
            }
        }
        _ => {
            return Err(reply(
                "malformed_message",
                "send a JSON object whose type is signal, state, chat, admit, decline, late, leave or ping",
            ));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(rx: &mut Receiver<Out>) -> Vec<Out> {
        let mut out = Vec::new();
        while let Ok(m) = rx.try_recv() {
            out.push(m);
        }
        out
    }

    fn types(out: &[Out]) -> Vec<String> {
        out.iter()
            .map(|o| match o {
                Out::Frame(v) => v["type"].as_str().unwrap_or("?").to_owned(),
                Out::Close(c, _) => format!("close {c}"),
            })
            .collect()
    }

    #[test]
    fn patient_waits_until_admitted_then_signals_relay_in_order() {
        let hub = Hub::default();
        let mut doc = hub.join("r", "d", Part::Clinician, "acc-d").unwrap();
        let mut pat = hub.join("r", "p", Part::Patient, "acc-p").unwrap();
        assert_eq!(types(&drain(&mut pat.rx)), ["welcome"]);
        let lobby = drain(&mut doc.rx);
        assert_eq!(types(&lobby), ["welcome", "lobby"]);
        let signal = json!({"type": "signal", "to": "d", "data": {"description": {}}});
        assert_eq!(hub.handle("r", "p", pat.epoch, &signal).unwrap_err().code, "not_admitted");
        assert_eq!(
            hub.handle("r", "p", pat.epoch, &json!({"type": "admit", "participant": "p"})).unwrap_err().code,
            "not_admitted"
        );
        hub.handle("r", "d", doc.epoch, &json!({"type": "late", "minutes": 5})).unwrap();
        assert_eq!(drain(&mut pat.rx), [Out::Frame(json!({"type": "late", "minutes": 5, "from": "d"}))]);
        hub.handle("r", "d", doc.epoch, &json!({"type": "admit", "participant": "p"})).unwrap();
        assert_eq!(types(&drain(&mut pat.rx)), ["admitted"]);
        assert_eq!(types(&drain(&mut doc.rx)), ["presence", "lobby"]);
        for n in 0..3 {
            hub.handle("r", "p", pat.epoch, &json!({"type": "signal", "to": "d", "data": {"n": n}})).unwrap();
        }
        let got: Vec<(u64, u64)> = drain(&mut doc.rx)
            .into_iter()
            .filter_map(|o| match o {
                Out::Frame(v) => Some((v["seq"].as_u64()?, v["data"]["n"].as_u64()?)),
                Out::Close(..) => None,
            })
            .collect();
        assert_eq!(got, [(1, 0), (2, 1), (3, 2)]);
    }

    #[test]
    fn the_fifth_is_refused_and_a_declined_one_stays_out() {
        let hub = Hub::default();
        let _d = hub.join("r", "d", Part::Clinician, "a0").unwrap();
        let mut rest: Vec<Joined> =
            ["p1", "p2", "p3"].iter().map(|p| hub.join("r", p, Part::Caregiver, p).unwrap()).collect();
        assert_eq!(hub.join("r", "p4", Part::Interpreter, "p4").unwrap_err(), Refused::Full);
        // A present participant may come back (another tab) even when the room is full.
        assert!(hub.join("r", "p3", Part::Caregiver, "p3").unwrap().resumed);
        let left = hub.handle("r", "d", _d.epoch, &json!({"type": "decline", "participant": "p1"})).unwrap();
        assert_eq!(left.map(|l| l.how), Some("declined"));
        let first = rest.remove(0);
        let mut rx = first.rx;
        assert_eq!(types(&drain(&mut rx)), ["welcome", "declined", "close 4403"]);
        assert_eq!(hub.join("r", "p1", Part::Caregiver, "p1").unwrap_err(), Refused::Declined);
    }

    #[test]
    fn a_receiver_that_falls_a_queue_behind_is_cut_off_not_left_to_grow() {
        let hub = Hub::default();
        let d = hub.join("r", "d", Part::Clinician, "a").unwrap();
        let mut p = hub.join("r", "p", Part::Patient, "b").unwrap();
        hub.handle("r", "d", d.epoch, &json!({"type": "admit", "participant": "p"})).unwrap();
        let signal = json!({"type": "signal", "to": "p", "data": {}});
        // `p` never reads: its queue holds QUEUE messages (two are there already).
        for _ in 0..QUEUE - 2 {
            hub.handle("r", "d", d.epoch, &signal).unwrap();
        }
        hub.handle("r", "d", d.epoch, &signal).unwrap();
        assert_eq!(hub.handle("r", "d", d.epoch, &signal).unwrap_err().code, "peer_unavailable");
        // What was queued is still delivered, then the queue ends: the socket task sees a drop.
        assert_eq!(drain(&mut p.rx).len(), QUEUE);
        assert!(p.rx.try_recv().is_err());
        assert!(hub.disconnect("r", "p", p.epoch));
    }

    #[test]
    fn a_drop_within_the_grace_resumes_and_after_it_leaves() {
        let hub = Hub::default();
        let d = hub.join("r", "d", Part::Clinician, "a").unwrap();
        assert!(hub.disconnect("r", "d", d.epoch));
        let again = hub.join("r", "d", Part::Clinician, "a").unwrap();
        assert!(again.resumed);
        // The old drop's timer finds a newer connection: nothing leaves.
        assert_eq!(hub.expire("r", "d", d.epoch), None);
        assert!(hub.disconnect("r", "d", again.epoch));
        assert_eq!(hub.expire("r", "d", again.epoch).map(|l| l.how), Some("timed_out"));
        assert!(hub.snapshot("r").0.is_empty());
        // Nobody left and nothing to keep: the room is forgotten.
        assert!(hub.lock().is_empty());
    }
}
