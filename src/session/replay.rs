//! One copy per subscription when a new subscription gets both live messages and a replay of
//! stored ones: the replay window of a session.
//!
//! A SUBSCRIBE puts the subscription into the router first, then reads the store for the
//! messages to replay (on_message_fetch_for_queue). A QoS 1 message published meanwhile is
//! routed to the new subscription *and* is in the store (the writer's index has it before it
//! is written), so without this the subscriber got it twice: live, and again replayed.
//!
//! Dedupe by msgid, with a mark and a record:
//! - The *mark* is a msgid taken from this node's generator just after the router insert.
//!   Ids come from one monotonic generator, so a message of this node whose id is above the
//!   mark got its id after the subscription was in the router, and was routed to it live:
//!   the replay leaves it out without looking further (`Window::is_live`).
//! - A message whose id is at or below the mark may have been routed before the insert (not
//!   delivered live: the replay must deliver it) or after it (in flight at the insert: it
//!   was). While a window is open, the session *records* the ids at or below the mark that
//!   it queues, live or replayed, and refuses a second copy of one (`first_copy`), whichever
//!   came first. Only ids below the mark are recorded, so the record holds the few messages
//!   in flight at the insert and the replayed ones, however long the window stays open (a
//!   store read that missed its deadline keeps it open until it completes).
//!
//! Ids of other nodes, or of this node before a restart (the id carries the process), are
//! never routed here live: the mark does not apply to them and they are not recorded.

use std::collections::HashSet;

use dynamq_store::msgid::MsgId;

/// The replay windows open on a session (boxed into the session state only while one is).
#[derive(Debug)]
pub(crate) struct ReplayWindows {
    /// Windows opened and not closed yet.
    open: usize,
    /// The highest mark of the open windows: ids up to it are recorded.
    mark: MsgId,
    /// Ids at or below `mark`, of this node, queued to the session while a window is open.
    queued: HashSet<MsgId>,
}

/// One window, as its replay sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window {
    mark: MsgId,
}

impl Window {
    /// A window whose mark is `mark` (see the module doc).
    pub(crate) fn new(mark: MsgId) -> Window {
        Window { mark }
    }

    /// True if a stored message with this id reached the subscription live for certain:
    /// an id of this node given after the mark.
    pub(crate) fn is_live(&self, id: MsgId) -> bool {
        id.node_hash() == self.mark.node_hash() && id > self.mark
    }
}

impl ReplayWindows {
    fn new(mark: MsgId) -> ReplayWindows {
        ReplayWindows {
            open: 1,
            mark,
            queued: HashSet::new(),
        }
    }

    /// Opens a window on `windows` (creating the record if none is open).
    pub(crate) fn open(windows: &mut Option<Box<ReplayWindows>>, w: Window) {
        match windows {
            Some(ws) => {
                ws.open += 1;
                ws.mark = ws.mark.max(w.mark);
            }
            None => *windows = Some(Box::new(ReplayWindows::new(w.mark))),
        }
    }

    /// Closes one window; the record goes with the last one.
    pub(crate) fn close(windows: &mut Option<Box<ReplayWindows>>) {
        if let Some(ws) = windows {
            ws.open = ws.open.saturating_sub(1);
            if ws.open == 0 {
                *windows = None;
            }
        }
    }

    /// True if a message with this id is not a second copy; records it if it is to be
    /// recorded (see the module doc). Called under the session lock, just before the message
    /// is queued.
    pub(crate) fn first_copy(&mut self, id: MsgId) -> bool {
        if id.node_hash() != self.mark.node_hash() || id > self.mark {
            return true;
        }
        self.queued.insert(id)
    }

    /// True if `id` is recorded as queued (the message is already there).
    #[cfg(test)]
    pub(crate) fn has(&self, id: MsgId) -> bool {
        self.queued.contains(&id)
    }

    /// Forgets `id` (its message was recorded but then not queued).
    pub(crate) fn forget(&mut self, id: MsgId) {
        self.queued.remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dynamq_store::msgid::MsgIdGen;

    #[test]
    fn ids_after_the_mark_are_live_and_not_recorded() {
        let ids = MsgIdGen::new("node-a");
        let before = ids.next_id();
        let mark = ids.next_id();
        let after = ids.next_id();
        let w = Window::new(mark);
        assert!(!w.is_live(before));
        assert!(!w.is_live(mark));
        assert!(w.is_live(after));
        let mut open = None;
        ReplayWindows::open(&mut open, w);
        let ws = open.as_mut().expect("a window is open");
        assert!(ws.first_copy(after));
        assert!(ws.first_copy(after), "ids after the mark are not recorded");
        assert!(ws.first_copy(before));
        assert!(
            !ws.first_copy(before),
            "a second copy of an id before the mark"
        );
    }

    #[test]
    fn other_nodes_ids_are_never_live_nor_recorded() {
        let here = MsgIdGen::new("node-a");
        let there = MsgIdGen::new("node-b");
        let mark = here.next_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let later_elsewhere = there.next_id();
        assert!(!Window::new(mark).is_live(later_elsewhere));
        let mut open = None;
        ReplayWindows::open(&mut open, Window::new(mark));
        let ws = open.as_mut().expect("a window is open");
        assert!(ws.first_copy(later_elsewhere));
        assert!(ws.first_copy(later_elsewhere));
    }

    #[test]
    fn the_record_goes_with_the_last_window() {
        let ids = MsgIdGen::new("node-a");
        let old = ids.next_id();
        let mut open = None;
        ReplayWindows::open(&mut open, Window::new(ids.next_id()));
        ReplayWindows::open(&mut open, Window::new(ids.next_id()));
        assert!(open.as_mut().expect("open").first_copy(old));
        ReplayWindows::close(&mut open);
        assert!(open.as_ref().is_some_and(|ws| ws.has(old)));
        ReplayWindows::close(&mut open);
        assert!(open.is_none());
        ReplayWindows::close(&mut open);
        assert!(open.is_none());
    }
}
