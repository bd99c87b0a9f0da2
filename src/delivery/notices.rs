//! The events besides messages that users see: a new chat, a moved read
//! marker, typing. Each is encoded once, queued on this node's sockets that
//! should see it, and published to the other nodes, so every kind of event
//! crosses nodes the same way messages do.

use crate::delivery::bus::{Bus, Envelope, Kind};
use crate::delivery::events::{chat_event, read_event, typing_event};
use crate::delivery::rooms::{peer_of, Audience, ConnId, Rooms, UserEvent};
use crate::model::Chat;
use bytes::Bytes;

/// Handle to the rooms and the bus for these events; cheap to clone.
#[derive(Clone)]
pub struct Notices {
    rooms: Rooms,
    bus: Bus,
}

impl Notices {
    pub fn new(rooms: Rooms, bus: Bus) -> Self {
        Notices { rooms, bus }
    }

    /// A chat was just created: both participants' user sockets hear of it.
    /// (A new chat looks the same to both: no messages, markers at 0.)
    pub async fn new_chat(&self, chat: &Chat) {
        let audience = [chat.participants[0].id, chat.participants[1].id];
        let frame = chat_event(chat);
        self.rooms
            .announce_chat(chat.id, audience, frame.clone())
            .await;
        self.publish(Kind::Chat, chat.id, audience, None, frame);
    }

    /// `reader`'s marker in `chat` is now `seq`: the other participant and
    /// the reader's other sockets (not `from`, where it was moved) hear of it.
    pub async fn read(
        &self,
        chat: i64,
        audience: Audience,
        (reader, seq): (i64, i64),
        from: ConnId,
    ) {
        let frame = read_event(chat, reader, seq);
        let events = audience.map(|user| {
            let except = Some(from);
            let frame = frame.clone();
            (
                user,
                UserEvent::Ephemeral {
                    chat,
                    frame,
                    except,
                },
            )
        });
        self.rooms.deliver(events).await;
        self.publish(Kind::Read, chat, audience, None, frame);
    }

    /// `typist` is typing in `chat`: the other participant hears of it.
    pub async fn typing(&self, chat: i64, audience: Audience, typist: i64) {
        let frame = typing_event(chat, typist);
        let peer = peer_of(audience, typist);
        let event = UserEvent::Ephemeral {
            chat,
            frame: frame.clone(),
            except: None,
        };
        self.rooms.deliver([(peer, event)]).await;
        self.publish(Kind::Typing, chat, audience, Some(peer), frame);
    }

    fn publish(&self, kind: Kind, chat: i64, audience: Audience, only: Option<i64>, frame: Bytes) {
        self.bus.publish_event(Envelope {
            kind,
            chat,
            seq: 0,
            audience,
            only,
            frame,
        });
    }
}
