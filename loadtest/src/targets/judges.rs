//! How a run is judged against each target: the figure it reads from which
//! reports, and when a target missed is out of this machine's reach.

use super::floor::{idle_note, Floor};
use super::verdict::{judged, whole, Status, Verdict};
use super::{Run, Target};
use crate::report::{ChatFigures, ConnectFigures, Figures, InboxFigures, Report, RestFigures};

pub fn chat_rate(target: &Target, run: &Run<'_>) -> Verdict {
    let Some(chat) = &run.reports.chat else {
        return Verdict::not_run(target.text);
    };
    let rate = chat.delivered_per_s;
    let stored = chat.figures.stored.map_or("?".into(), |n| whole(n as f64));
    let acked = whole(chat.figures.acknowledged as f64);
    let measured = format!(
        "{} msg/s; stored {stored}, acknowledged {acked}",
        whole(rate)
    );
    judged(
        target.text,
        &[chat.failed()],
        measured,
        rate >= target.bound,
    )
}

pub fn chat_latency(target: &Target, run: &Run<'_>) -> Verdict {
    let Some(chat) = &run.reports.chat_rate else {
        return Verdict::not_run(target.text);
    };
    let p99 = chat.latency_ms.p99;
    let offered = chat.figures.offered_per_s.unwrap_or(0) as f64;
    let measured = format!("p99 {p99:.2} ms at {} msg/s offered", whole(offered));
    let met = offered >= target.at && p99 <= target.bound;
    judged(target.text, &[chat.failed()], measured, met)
}

pub fn chat_to_echo(target: &Target, run: &Run<'_>) -> Verdict {
    ratio(target, run, run.reports.echo.as_ref(), "msg/s")
}

pub fn persisted_to_store(target: &Target, run: &Run<'_>) -> Verdict {
    ratio(target, run, run.reports.store_ceiling.as_ref(), "rows/s")
}

/// Chat's `delivered_per_s` against `bound` × a ceiling's (`to`); with the
/// run's [`Floor`], a target the floor puts above reach is out of reach.
fn ratio<F: Figures>(
    target: &Target,
    run: &Run<'_>,
    to: Option<&Report<F>>,
    unit: &str,
) -> Verdict {
    let (Some(chat), Some(to)) = (run.reports.chat.as_ref(), to) else {
        return Verdict::not_run(target.text);
    };
    let (a, b) = (chat.delivered_per_s, to.delivered_per_s);
    let r = if b > 0.0 { a / b } else { 0.0 };
    let mut measured = format!("{r:.2} ({} / {} {unit})", whole(a), whole(b));
    let floor = Floor::chat(run.reports);
    if let Some(floor) = &floor {
        measured += &floor.describe(a, "message", " msg/s", "chat");
        measured += &idle_note(chat.figures.machine.idle_share);
    }
    let failed = [chat.failed(), to.failed()];
    let mut verdict = judged(target.text, &failed, measured, r >= target.bound);
    let out_of_reach = floor.is_some_and(|floor| floor.rate() < target.bound * b);
    if verdict.status == Status::NotMet && out_of_reach {
        verdict.status = Status::OutOfReach;
    }
    verdict
}

/// With the run's [`Floor`] for a socket, a rate the floor puts above reach
/// (every socket held) is out of reach.
pub fn connect_rate(target: &Target, run: &Run<'_>) -> Verdict {
    let text = target.text_for(run);
    let Some(connect) = &run.reports.connect else {
        return Verdict::not_run(text);
    };
    let figures = &connect.figures;
    let (rate, held) = (figures.connect_per_s, figures.connections_held);
    let mut measured = format!("{}/s, {} held", whole(rate), whole(held as f64));
    if let Some(ceiling) = run
        .reports
        .connect_ceiling
        .as_ref()
        .map(|c| c.figures.connect_per_s)
        .filter(|c| *c > 0.0)
    {
        measured += &format!("; ceiling {}/s ({:.2}×)", whole(ceiling), rate / ceiling);
    }
    let floor = Floor::connect(run.reports);
    if let Some(floor) = &floor {
        measured += &floor.describe(rate, "socket", "/s", "connect");
        measured += &idle_note(figures.machine.idle_share);
    }
    let all_held = held >= run.connections;
    let met = all_held && rate >= target.bound;
    let mut verdict = judged(&text, &[connect.failed()], measured, met);
    let out_of_reach = floor.is_some_and(|floor| floor.rate() < target.bound);
    if verdict.status == Status::NotMet && all_held && out_of_reach {
        verdict.status = Status::OutOfReach;
    }
    verdict
}

/// Judged on the memory of the sockets held idle (read at the end of the
/// hold, after a ping round when the servers ping within it); the figure right
/// after the storm, which still counts the finished handshakes' memory being
/// given back, is shown beside it.
pub fn connect_memory(target: &Target, run: &Run<'_>) -> Verdict {
    let Some(connect) = &run.reports.connect else {
        return Verdict::not_run(target.text);
    };
    let after_storm = connect.figures.rss_per_connection_bytes;
    let end_of_hold = connect.figures.rss_per_connection_end_of_hold_bytes;
    let measured = format!(
        "{} B at the end of the hold ({} B right after the storm)",
        end_of_hold.map_or("?".into(), whole),
        after_storm.map_or("?".into(), whole)
    );
    let met = end_of_hold.is_some_and(|bytes| bytes <= target.bound);
    judged(target.text, &[connect.failed()], measured, met)
}

pub fn rest_sends(target: &Target, run: &Run<'_>) -> Verdict {
    rest(target, run, |rest| rest.figures.sends_per_s)
}

pub fn rest_reads(target: &Target, run: &Run<'_>) -> Verdict {
    rest(target, run, |rest| rest.figures.reads_per_s)
}

fn rest(target: &Target, run: &Run<'_>, rate_of: fn(&Report<RestFigures>) -> f64) -> Verdict {
    let Some(rest) = &run.reports.rest else {
        return Verdict::not_run(target.text);
    };
    let rate = rate_of(rest);
    let clients = whole(rest.figures.concurrency as f64);
    let measured = format!("{}/s ({clients} clients)", whole(rate));
    judged(
        target.text,
        &[rest.failed()],
        measured,
        rate >= target.bound,
    )
}

/// The inbox's delivered msg/s against the chat scenario's of the same run.
pub fn inbox_to_chat(target: &Target, run: &Run<'_>) -> Verdict {
    let (Some(inbox), Some(chat)) = (&run.reports.inbox, &run.reports.chat) else {
        return Verdict::not_run(target.text);
    };
    let (a, b) = (inbox.delivered_per_s, chat.delivered_per_s);
    let r = if b > 0.0 { a / b } else { 0.0 };
    let figures = &inbox.figures;
    let measured = format!(
        "{r:.2} ({} / {} msg/s; {} users × {} chats; stored {}, acknowledged {})",
        whole(a),
        whole(b),
        whole(figures.users as f64),
        figures.chats_per_user,
        figures.stored.map_or("?".into(), |n| whole(n as f64)),
        whole(figures.acknowledged as f64)
    );
    let measured = measured + &cpu_per_message(figures, &chat.figures);
    let failed = [inbox.failed(), chat.failed()];
    judged(target.text, &failed, measured, r >= target.bound)
}

/// `"; CPU µs per message, inbox / chat: database a / b, server ..., tester
/// ... (sum / sum: 0.50×)"`: with the cores busy in both runs, the inbox
/// ratio follows what each delivered message costs; empty when a figure is
/// missing.
fn cpu_per_message(inbox: &InboxFigures, chat: &ChatFigures) -> String {
    cpu_compared(
        "message, inbox / chat",
        &[
            (
                "database",
                inbox.database_cpu_per_message_us,
                chat.database_cpu_per_message_us,
            ),
            (
                "server",
                inbox.server_cpu_per_message_us,
                chat.server_cpu_per_message_us,
            ),
            (
                "tester",
                inbox.tool_cpu_per_message_us,
                chat.tool_cpu_per_message_us,
            ),
        ],
    )
}

/// The same for a socket of each storm: user sockets against per-chat ones.
fn cpu_per_socket(users: &ConnectFigures, chats: &ConnectFigures) -> String {
    cpu_compared(
        "socket, user / per-chat",
        &[
            (
                "server",
                users.server_cpu_per_connection_us,
                chats.server_cpu_per_connection_us,
            ),
            (
                "tester",
                users.tool_cpu_per_connection_us,
                chats.tool_cpu_per_connection_us,
            ),
            (
                "database",
                users.database_cpu_per_connection_us,
                chats.database_cpu_per_connection_us,
            ),
            (
                "bus",
                users.bus_cpu_per_connection_us,
                chats.bus_cpu_per_connection_us,
            ),
        ],
    )
}

/// `"; CPU µs per <what>: who a / b, ... (sum / sum: b/a×)"` from each
/// process's CPU per item in two runs; empty when a figure is missing.
fn cpu_compared(what: &str, pairs: &[(&str, Option<f64>, Option<f64>)]) -> String {
    let mut parts = Vec::with_capacity(pairs.len());
    let (mut a_sum, mut b_sum) = (0.0, 0.0);
    for &(who, a, b) in pairs {
        let (Some(a), Some(b)) = (a, b) else {
            return String::new();
        };
        parts.push(format!("{who} {a:.1} / {b:.1}"));
        (a_sum, b_sum) = (a_sum + a, b_sum + b);
    }
    if a_sum <= 0.0 {
        return String::new();
    }
    format!(
        "; CPU µs per {what}: {} ({a_sum:.1} / {b_sum:.1}: {:.2}×)",
        parts.join(", "),
        b_sum / a_sum
    )
}

/// The user-socket storm's rate against the per-chat one of the same run;
/// every socket asked for must be held.
pub fn user_connect_rate(target: &Target, run: &Run<'_>) -> Verdict {
    let (Some(users), Some(chats)) = (&run.reports.connect_user, &run.reports.connect) else {
        return Verdict::not_run(target.text);
    };
    let (a, b) = (users.figures.connect_per_s, chats.figures.connect_per_s);
    let r = if b > 0.0 { a / b } else { 0.0 };
    let held = users.figures.connections_held;
    let measured = format!(
        "{r:.2} ({}/s / {}/s; {} held)",
        whole(a),
        whole(b),
        whole(held as f64)
    );
    let measured = measured + &cpu_per_socket(&users.figures, &chats.figures);
    let met = r >= target.bound && held >= run.connections;
    judged(
        target.text,
        &[users.failed(), chats.failed()],
        measured,
        met,
    )
}

/// A user socket's memory at the end of the hold against 4 KiB plus the
/// allowance per chat of its user, its client having synced `{}`.
pub fn user_connect_memory(target: &Target, run: &Run<'_>) -> Verdict {
    user_socket_memory(target, run.reports.connect_user.as_ref())
}

/// The same for sockets whose first `sync` names every chat of their user at
/// its cursor, as our client's does: what a reconnect storm of real clients
/// leaves each idle socket holding.
pub fn user_sync_memory(target: &Target, run: &Run<'_>) -> Verdict {
    user_socket_memory(target, run.reports.connect_user_sync.as_ref())
}

fn user_socket_memory(target: &Target, users: Option<&Report<ConnectFigures>>) -> Verdict {
    let Some(users) = users else {
        return Verdict::not_run(target.text);
    };
    let chats = users.figures.chats_per_user.unwrap_or(0) as f64;
    let bound = target.bound + target.at * chats;
    let end_of_hold = users.figures.rss_per_connection_end_of_hold_bytes;
    let mut measured = format!(
        "{} B at the end of the hold, {chats} chats each (bound {} B)",
        end_of_hold.map_or("?".into(), whole),
        whole(bound)
    );
    if let Some(answered) = users.figures.syncs_answered_after_s {
        measured += &format!(
            "; held {} s from when every sync was answered, {answered:.1} s into the storm",
            users.figures.held_for_s
        );
    }
    let met = end_of_hold.is_some_and(|bytes| bytes <= bound);
    judged(target.text, &[users.failed()], measured, met)
}
